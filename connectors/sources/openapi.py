"""The webhook source's OpenAPI 3.1 document, built from the same models that validate requests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from connectors.sources.signatures import SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER

if TYPE_CHECKING:
    from connectors.sources.webhook import Endpoint

_ERRORS = {
    "400": "malformed_json | not_utf8 | duplicate_key | too_deep | number_too_long | "
    "string_too_long | lone_surrogate | not_a_number | malformed_body (not a JSON object) | "
    "invalid_idempotency_key",
    "401": "signature_missing | unknown_source | timestamp_invalid | timestamp_expired | "
    "signature_invalid",
    "409": "request_in_progress: the same Idempotency-Key is being processed; send it again "
    "after the seconds the Retry-After header gives",
    "413": "body_too_large",
    "415": "unsupported_media_type: only application/json (UTF-8) is accepted",
    "422": "invalid_event: `problems` lists each field and what is wrong with it | "
    "idempotency_key_reused: the key was used before with a different body | "
    "unencodable: the event does not fit its Avro contract",
    "503": "broker_unavailable | idempotency_store_unavailable | archive_unavailable: nothing "
    "was published; retry "
    "with the same Idempotency-Key",
}


def openapi_document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Accepted": {"type": "object", "required": ["status", "event_id", "key"], "properties": {
            "status": {"const": "accepted"}, "event_id": {"type": "string"},
            "key": {"type": "string"}, "topic": {"type": "string"},
            "partition": {"type": "integer"}, "offset": {"type": "integer"}}},
        "Error": {"type": "object", "required": ["error", "message", "problems"], "properties": {
            "error": {"type": "string"}, "message": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "object", "properties": {
                "field": {"type": "string"}, "message": {"type": "string"}}}}}},
    }  # fmt: skip
    parameters = [
        {"name": SOURCE_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
         "description": "The upstream system's name; selects the shared secret."},
        {"name": TIMESTAMP_HEADER, "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
         "description": "Unix seconds; requests outside the replay window are refused."},
        {"name": SIGNATURE_HEADER, "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
         "description": "sha256=hex(HMAC-SHA256(secret, timestamp + '.' + body))."},
        {"name": "Idempotency-Key", "in": "header", "required": False,
         "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
         "description": "Retries with the same key get the first answer and are written once "
                        "(default: the event_id, else the body's hash)."},
    ]  # fmt: skip
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        model_schema = endpoint.model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[endpoint.model.__name__] = model_schema
        responses: dict[str, Any] = {
            "202": {
                "description": "Written to Kafka (acks=all).",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
                },
            }
        }
        for status, text in _ERRORS.items():
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        responses["409"]["headers"] = {"Retry-After": {
            "description": "Seconds to wait before sending the request again",
            "schema": {"type": "integer", "minimum": 1}}}  # fmt: skip
        paths[endpoint.path] = {"post": {
            "summary": endpoint.summary, "operationId": endpoint.path.strip("/").replace("/", "_"),
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{endpoint.model.__name__}"}}}},
            "responses": responses}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "erpbridge webhook source", "version": "1",
                 "description": "Signed webhooks for expense claims, approvals and invoices."},
        "paths": paths,
        "components": {"schemas": schemas},
    }  # fmt: skip
