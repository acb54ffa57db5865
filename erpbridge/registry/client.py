"""Client for the Confluent Schema Registry REST API (Confluent, Karapace, Apicurio's ccompat API,
or our embedded registry): register, lookup, fetch by id, latest by subject, compatibility."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

from erpbridge.failures.classify import RetryableError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """The registry answered with an error; ``code`` is its ``error_code``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"schema registry: {message} (HTTP {status}, error {code})")
        self.status, self.code, self.message = status, code, message


class SchemaNotFound(RegistryError):
    """404: no such subject, version or schema id."""


class IncompatibleSchema(RegistryError):
    """409: the schema breaks the subject's compatibility mode."""


class RegistryUnavailable(RetryableError):
    """The registry could not be reached or failed (5xx): retry later; the data is not at fault."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


class SchemaRegistryClient:
    def __init__(
        self, url: str, timeout: float = 10.0, auth: tuple[str, str] | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, auth=auth, headers={"Accept": CONTENT_TYPE}
        )
        self._lock = threading.Lock()
        self._by_id: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self._http.close()

    # -- schemas -------------------------------------------------------------------------
    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (no-op when present); return its global id."""
        key = (subject, schema)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        reply = self._request(
            "POST", f"/subjects/{subject}/versions", {"schema": schema, "schemaType": "AVRO"}
        )
        return self._remember(subject, schema, int(reply["id"]))

    def lookup(self, subject: str, schema: str) -> RegisteredSchema:
        """The version of ``subject`` holding ``schema`` (SchemaNotFound when it is not there)."""
        reply = self._request("POST", f"/subjects/{subject}", {"schema": schema})
        self._remember(subject, schema, int(reply["id"]))
        return _registered(reply)

    def schema_by_id(self, schema_id: int) -> str:
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        text = str(self._request("GET", f"/schemas/ids/{schema_id}")["schema"])
        with self._lock:
            self._by_id[schema_id] = text
        return text

    def latest(self, subject: str) -> RegisteredSchema:
        return _registered(self._request("GET", f"/subjects/{subject}/versions/latest"))

    def version(self, subject: str, version: int) -> RegisteredSchema:
        return _registered(self._request("GET", f"/subjects/{subject}/versions/{version}"))

    def subjects(self) -> list[str]:
        return list(self._request("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        return list(self._request("GET", f"/subjects/{subject}/versions"))

    # -- compatibility -------------------------------------------------------------------
    def check_compatibility(self, subject: str, schema: str) -> list[str]:
        """Problems of registering ``schema`` under ``subject`` (empty: compatible)."""
        reply = self._request(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
            {"schema": schema},
        )
        if reply.get("is_compatible"):
            return []
        return list(reply.get("messages") or ["incompatible"])

    def set_compatibility(self, mode: str, subject: str | None = None) -> None:
        self._request(
            "PUT", f"/config/{subject}" if subject else "/config", {"compatibility": mode}
        )

    def get_compatibility(self, subject: str | None = None) -> str:
        reply = self._request("GET", f"/config/{subject}" if subject else "/config")
        return str(reply.get("compatibilityLevel") or reply.get("compatibility"))

    # -- transport -----------------------------------------------------------------------
    def _remember(self, subject: str, schema: str, schema_id: int) -> int:
        with self._lock:
            self._ids[(subject, schema)] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            reply = self._http.request(
                method, path, json=body, headers={"Content-Type": CONTENT_TYPE} if body else None
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry at {self.url}: {exc}") from exc
        if reply.status_code >= 500:
            raise RegistryUnavailable(f"schema registry at {self.url}: HTTP {reply.status_code}")
        try:
            payload = reply.json()
        except ValueError:
            payload = {"message": reply.text}
        if reply.status_code >= 400:
            code = int(payload.get("error_code", reply.status_code))
            message = str(payload.get("message", reply.reason_phrase))
            error = {404: SchemaNotFound, 409: IncompatibleSchema}.get(
                reply.status_code, RegistryError
            )
            raise error(reply.status_code, code, message)
        return payload


def _registered(reply: dict[str, Any]) -> RegisteredSchema:
    return RegisteredSchema(
        subject=str(reply["subject"]),
        version=int(reply["version"]),
        schema_id=int(reply["id"]),
        schema=str(reply["schema"]),
    )
