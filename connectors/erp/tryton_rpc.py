"""Tryton JSON-RPC transport: session login, Tryton's JSON types, error classification."""

from __future__ import annotations

import base64
import datetime
import itertools
import json
from decimal import Decimal
from typing import Any

import httpx

from connectors.erp.errors import PermanentErpError, RetryableErpError
from erpbridge.failures.classify import http_failure
from erpbridge.tls import http_verify

# Tryton errors that mean "try again": row locks and concurrent updates.
# Lock conflicts and "database is locked" (SQLite under concurrent bookings) pass with a retry.
_RETRYABLE_TRYTON_ERRORS = {"ConcurrencyException", "RateLimitException",
                            "DatabaseOperationalError", "OperationalError"}  # fmt: skip
_RETRYABLE_TEXT = ("database is locked", "could not serialize", "deadlock detected")


def _encode(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return {"__class__": "Decimal", "decimal": str(obj)}
    if isinstance(obj, datetime.datetime):
        return {
            "__class__": "datetime",
            "year": obj.year,
            "month": obj.month,
            "day": obj.day,
            "hour": obj.hour,
            "minute": obj.minute,
            "second": obj.second,
            "microsecond": obj.microsecond,
        }
    if isinstance(obj, datetime.date):
        return {"__class__": "date", "year": obj.year, "month": obj.month, "day": obj.day}
    if isinstance(obj, bytes):
        return {"__class__": "bytes", "base64": base64.b64encode(obj).decode()}
    raise TypeError(f"cannot send {type(obj).__name__} to Tryton")


def _decode(dct: dict[str, Any]) -> Any:
    kind = dct.get("__class__")
    if kind == "Decimal":
        return Decimal(dct["decimal"])
    if kind == "date":
        return datetime.date(dct["year"], dct["month"], dct["day"])
    if kind == "datetime":
        return datetime.datetime(
            dct["year"],
            dct["month"],
            dct["day"],
            dct.get("hour", 0),
            dct.get("minute", 0),
            dct.get("second", 0),
            dct.get("microsecond", 0),
        )
    if kind == "bytes":
        return base64.decodebytes(dct["base64"].encode())
    return dct


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, default=_encode, ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    return json.loads(data, object_hook=_decode)


class TrytonRpc:
    """A logged-in JSON-RPC session to one Tryton database; re-logs in when the session expires."""

    def __init__(
        self,
        url: str,
        database: str,
        user: str,
        password: str,
        timeout: float = 30.0,
        ca_file: str = "",
    ) -> None:
        self._endpoint = f"{url.rstrip('/')}/{database}/rpc/"
        self._user = user
        self._password = password
        self._http = httpx.Client(timeout=timeout, verify=http_verify(ca_file))
        self._auth: str | None = None
        self._ids = itertools.count(1)
        self.context: dict[str, Any] = {}

    def close(self) -> None:
        self._http.close()

    def login(self) -> None:
        result = self._post(
            "common.db.login", [self._user, {"password": self._password}, "en"], authenticated=False
        )
        if not result:
            raise PermanentErpError(f"Tryton refused the login of user {self._user!r}")
        uid, token = result[0], result[1]
        self._auth = "Session " + base64.b64encode(f"{self._user}:{uid}:{token}".encode()).decode()
        self.context = self._post("model.res.user.get_preferences", [True, {}])

    def ping(self) -> bool:
        """Does the server answer (any HTTP answer below 500; no login needed)?"""
        body = dumps({"id": next(self._ids), "method": "common.server.version", "params": []})
        try:
            reply = self._http.post(self._endpoint, content=body,
                                    headers={"Content-Type": "application/json"})  # fmt: skip
        except httpx.HTTPError:
            return False
        return reply.status_code < 500

    def call(self, method: str, *args: Any, context: dict[str, Any] | None = None) -> Any:
        """Call ``method`` with ``args`` and the user's context appended, as Tryton expects
        (with ``context``'s keys added: a wizard's ``active_id``, say)."""
        if self._auth is None:
            self.login()
        try:
            return self._post(method, [*args, {**self.context, **(context or {})}])
        except _SessionExpired:
            self.login()
            return self._post(method, [*args, {**self.context, **(context or {})}])

    def _post(self, method: str, params: list[Any], authenticated: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if authenticated and self._auth:
            headers["Authorization"] = self._auth
        body = dumps({"id": next(self._ids), "method": method, "params": params})
        try:
            reply = self._http.post(self._endpoint, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableErpError(f"Tryton timed out on {method}") from exc
        except httpx.TransportError as exc:
            raise RetryableErpError(f"Tryton unreachable on {method}: {exc}") from exc
        if reply.status_code == 401 and authenticated:
            raise _SessionExpired()
        if reply.status_code == 404 and method == "common.db.login":
            # Tryton answers a login it could not complete with 404: the database locked by a
            # concurrent write (SQLite: "database is locked"), not loaded yet, or not there. The
            # first two pass; the last keeps the breaker open, visibly, instead of dead-lettering
            # every posting.
            raise RetryableErpError("Tryton could not open the database to log in (HTTP 404: "
                                    "locked by another write, not loaded yet, or no such "
                                    "database)")  # fmt: skip
        if reply.status_code != 200:
            raise http_failure(reply.status_code, reply.headers,
                               f"Tryton answered HTTP {reply.status_code} on {method}",
                               any_server_error=True, retryable=RetryableErpError,
                               permanent=PermanentErpError)  # fmt: skip
        payload = loads(reply.content)
        if payload.get("error"):
            raise _classify(method, payload["error"])
        return payload.get("result")


class _SessionExpired(Exception):
    pass


def _classify(method: str, error: Any) -> Exception:
    """Turn Tryton's ``["UserError", [message, description, domain]]`` into our error classes."""
    kind, detail = (error[0], error[1]) if isinstance(error, list) and error else (str(error), None)
    message = detail[0] if isinstance(detail, list) and detail else str(detail or "")
    text = f"Tryton {kind} on {method}: {message}".strip()
    if kind in _RETRYABLE_TRYTON_ERRORS or any(t in text for t in _RETRYABLE_TEXT):
        return RetryableErpError(text)
    return PermanentErpError(text)
