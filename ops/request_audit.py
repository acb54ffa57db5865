"""Refusals no handler saw, audited: a request aiohttp's parser refused (400 malformed, 413, a
request line or header too long), an unknown path (404) or method (405).

aiohttp answers those before any handler or middleware runs, but every answer passes its access
logger, so :func:`access_log_auditing` gives the server one that appends an ``api.refused``
record for each answer of 400 or more that no handler audited (a handler that audits marks its
request with :data:`AUDITED`). The appends run on one thread behind a bounded queue: a flood of
garbage cannot stall the server, and what the queue could not hold is counted and audited as one
``api.refused.unrecorded`` record once it drains, so nothing is left out silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from ops.audit import ANONYMOUS

AUDITED = "erpbridge.audited"  # request key: a handler audited this call
log = logging.getLogger("erpbridge.ops")
Append = Callable[..., Any]  # AuditTrail.append


class RefusalRecorder:
    """Appends refusal records on its own thread, from a queue of at most ``capacity``."""

    def __init__(self, append: Append, capacity: int = 1000) -> None:
        self._append, self._queue = append, queue.Queue[dict[str, Any]](capacity)
        self._lock, self._overflow = threading.Lock(), 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="ops-refusals")
        self._thread.start()

    def record(self, selection: dict[str, Any], detail: str) -> None:
        try:
            self._queue.put_nowait({"selection": selection, "detail": detail})
        except queue.Full:
            with self._lock:
                self._overflow += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._append(ANONYMOUS, "api.refused", selection=item["selection"],
                             outcome="refused", detail=item["detail"])  # fmt: skip
                with self._lock:
                    lost, self._overflow = self._overflow, 0
                if lost:
                    self._append(ANONYMOUS, "api.refused.unrecorded", outcome="refused",
                                 counts={"requests": lost},
                                 detail="refusals the queue could not hold")  # fmt: skip
            except Exception:  # the trail is unavailable: say so where an operator looks
                log.exception("a refusal could not be audited stage=ops detail=%s",
                              item["detail"][:200])  # fmt: skip


def access_log_auditing(recorder: RefusalRecorder) -> type[AbstractAccessLogger]:
    """An access-logger class (``access_log_class``) that audits unaudited refusals."""

    class AuditingAccessLogger(AbstractAccessLogger):
        @property
        def enabled(self) -> bool:
            return True  # aiohttp skips a disabled access logger

        def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
            if response.status < 400 or request.get(AUDITED):
                return
            remote = request.remote or "-"
            path = request.raw_path[:200]
            reason = getattr(response, "text", None) or response.reason or ""
            recorder.record({"method": request.method[:16], "path": path, "remote": remote,
                             "status": response.status},
                            f"{response.status}: {str(reason).strip()[:300]}")  # fmt: skip

    return AuditingAccessLogger
