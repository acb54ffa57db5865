"""A stand-in for a REST ERP gateway (as in front of Kingdee / Yonyou / SAP), for the generic REST
sink's tests: it stores vouchers by external reference, refuses unknown accounts (422), answers
409 for a repeated idempotency key, and can be told to fail the next requests (503, 429...); it
lists vouchers by date (``?from=&to=``) and looks many up at once (``?external_refs=a,b``)
for reconciliation; ``POST /vouchers/batch`` books many, one result per item."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ACCOUNTS = {"5.2.2", "5.1.3", "6602.01"}


@dataclass
class Gateway:
    vouchers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    token: str | None = None
    # master data the gateway lists, by path: GET PATH?offset=&limit= answers {"items": [...]}
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Create one voucher: 201 and the voucher, 409 for a known reference, 422 for an
        unknown account."""
        bad = [line["account"] for line in body["lines"] if line["account"] not in ACCOUNTS]
        if bad:
            return 422, {"error": f"unknown account(s) {bad}"}
        ref = body["external_ref"]
        with self.lock:
            if ref in self.vouchers:
                return 409, {"error": "duplicate external_ref"}
            n = len(self.vouchers) + 1
            voucher = {"id": 1000 + n, "number": f"AP-{n:05d}", "voucher_number": f"记-{n:04d}",
                       "status": "posted", **body}  # fmt: skip
            self.vouchers[ref] = voucher
        return 201, voucher

    def pay(self, reference: str, on: str, number: str) -> None:
        """The ERP's cashier pays a voucher in full."""
        with self.lock:
            voucher = self.vouchers[reference]
            voucher.update(status="paid", paid_amount=voucher["total"], paid_on=on,
                           payment_number=number)  # fmt: skip

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real gateway does
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None):
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> bool:
                with gateway.lock:
                    gateway.requests.append((self.command, self.path, dict(self.headers)))
                    failure = gateway.fail_next.pop(0) if gateway.fail_next else None
                if failure:
                    self._reply(failure[0], {"error": "injected"}, failure[1])
                    return False
                if gateway.token and self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    self._reply(401, {"error": "unauthorized"})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._gate():
                    return
                url = urlparse(self.path)
                if url.path == "/":
                    self._reply(200, {"status": "up"})
                    return
                query = parse_qs(url.query)
                if url.path in gateway.lists:
                    offset, limit = int(query["offset"][0]), int(query["limit"][0])
                    with gateway.lock:
                        page = gateway.lists[url.path][offset : offset + limit]
                    self._reply(200, {"items": page, "offset": offset})
                    return
                if "from" in query and "to" in query:  # the listing by date
                    start, end = query["from"][0], query["to"][0]
                    with gateway.lock:
                        found = [v for v in gateway.vouchers.values()
                                 if start <= v["date"] <= end]  # fmt: skip
                    self._reply(200, found)
                    return
                if "external_refs" in query:  # the batch lookup
                    refs = query["external_refs"][0].split(",")
                    with gateway.lock:
                        found = [gateway.vouchers[r] for r in refs if r in gateway.vouchers]
                    self._reply(200, found)
                    return
                ref = query.get("external_ref", [""])[0]
                with gateway.lock:
                    found = [gateway.vouchers[ref]] if ref in gateway.vouchers else []
                self._reply(200, found)

            def do_POST(self) -> None:  # noqa: N802
                if not self._gate():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if urlparse(self.path).path == "/vouchers/batch":  # one result per item
                    results = []
                    for item in body["items"]:
                        status, answer = gateway.create(item)
                        results.append({"status": status, **(
                            {"document": answer} if status == 201 else answer)})  # fmt: skip
                    self._reply(200, {"results": results})
                    return
                self._reply(*gateway.create(body))

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}"
