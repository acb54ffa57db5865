"""The ERP clients verify TLS on https URLs (issue 19): a server whose certificate the client's
CA file (or trust store) does not vouch for is refused, with the reason; the company's CA,
given as ``*_CA_FILE``, lets the same client in."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.erp.errors import RetryableErpError
from connectors.erp.kingdee import KingdeeSettings, KingdeeWriter
from connectors.erp.tryton_rpc import TrytonRpc
from deploy.local.tls import Authority
from tests.fakes.json_server import serve


def _https_server(home: Path, answer: Any) -> tuple[Any, str, Authority]:
    authority = Authority(home / "ca")
    issued = authority.issue("erp.example", server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    server, url = serve(lambda *_: (200, answer, {}), tls=context)
    return server, url, authority


def test_tryton_over_https_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    server, url, authority = _https_server(tmp_path, {"id": 1, "result": [7, "session-key"]})
    try:
        untrusting = TrytonRpc(url, "erpbridge", "admin", "admin-password")
        with pytest.raises(RetryableErpError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.login()
        trusting = TrytonRpc(url, "erpbridge", "admin", "admin-password",
                             ca_file=str(authority.cert_path))  # fmt: skip
        trusting.login()  # the stand-in answers a session: the TLS handshake was verified
        stranger = Authority(tmp_path / "other")
        wrong_ca = TrytonRpc(url, "erpbridge", "admin", "admin-password",
                             ca_file=str(stranger.cert_path))  # fmt: skip
        with pytest.raises(RetryableErpError, match="CERTIFICATE_VERIFY_FAILED"):
            wrong_ca.login()
    finally:
        server.shutdown()


def test_a_gateway_writer_over_https_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    server, url, authority = _https_server(tmp_path, {"ok": True})
    try:
        refused = KingdeeWriter(KingdeeSettings(base_url=f"{url}/k3cloud/"))
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            refused._http.get("/")
        assert refused.probe() is False
        trusted = KingdeeWriter(KingdeeSettings(base_url=f"{url}/k3cloud/",
                                                ca_file=str(authority.cert_path)))  # fmt: skip
        assert trusted.probe() is True
    finally:
        server.shutdown()
