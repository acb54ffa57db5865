"""The ops API's OpenAPI 3.1 document, built from the same models that read its requests
(:mod:`ops.requests`), so what it documents is what is checked."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ops.requests import ClaimsQuery, FailuresQuery, PurgeBody, ReleaseBody, ReplayBody, ShowQuery

_ERRORS = {
    "400": "malformed_json | malformed_body | not_utf8 | duplicate_key | too_deep | "
    "number_too_long | string_too_long | lone_surrogate | not_a_number | bad_request (a "
    "malformed record address)",
    "401": "unauthorized: no credential, or one that is unknown, expired or not signed by the "
    "configured issuer",
    "403": "forbidden: the role is short of what this needs (or a console form from another site)",
    "404": "not_found",
    "405": "method_not_allowed",
    "409": "replay_in_progress: another run holds this failure topic (Retry-After says when to "
    "ask again) | not_held: the claim is not held over budget",
    "413": "body_too_large",
    "422": "invalid_request: `problems` lists each field and what is wrong with it | "
    "unknown_topic: `to` is not a topic this pipeline replays to",
    "503": "unavailable: the broker, Redis or the schema registry did not answer; nothing was "
    "done, ask again",
}
_ERROR_SCHEMA = {"type": "object", "required": ["error", "message", "problems"], "properties": {
    "error": {"type": "string"}, "message": {"type": "string"},
    "problems": {"type": "array", "items": {"type": "object", "properties": {
        "field": {"type": "string"}, "message": {"type": "string"}}}}}}  # fmt: skip


def _responses(ok: str, *statuses: str) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    found: dict[str, Any] = {"200": {"description": ok, "content": {"application/json": {
        "schema": {"type": "object"}}}}}  # fmt: skip
    for status in ("401", "403", "405", "503", *statuses):
        found[status] = {"description": _ERRORS[status], "content": error}
    return found


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its ``null`` branch (a query parameter is absent instead)."""
    branches = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(branches) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema()["properties"]
    return [{"name": name, "in": "query", "required": False,
             "schema": {k: v for k, v in _not_null(schema).items()
                        if k != "title" and not (k == "default" and v is None)},
             **({"style": "form", "explode": True} if name == "header" else {})}
            for name, schema in properties.items()]  # fmt: skip


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}  # fmt: skip


def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ReplayBody, PurgeBody, ReleaseBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    where = {"name": "where", "in": "path", "required": True, "schema": {
        "type": "string", "minLength": 1, "maxLength": 300},
        "description": "topic[partition]@offset"}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "erpbridge ops API", "version": "3",
                 "description": "Failure records, replay, claim journeys, budget holds and the "
                 "audit trail, by role. Every call is audited, refusals included."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": schemas},
        "security": [{"bearer": []}],
        "paths": {
            "/api/failures": {"get": {
                "operationId": "list_failures",
                "summary": "List failure records (viewer; unmask: admin)",
                "parameters": _query_parameters(FailuresQuery),
                "responses": _responses("summary, records", "422")}},
            "/api/failures/{where}": {"get": {
                "operationId": "show_failure",
                "summary": "One failure record, topic[partition]@offset (viewer; unmask: admin)",
                "parameters": [where, *_query_parameters(ShowQuery)],
                "responses": _responses("the record", "400", "404", "422")}},
            "/api/replay": {"post": {
                "operationId": "replay",
                "summary": "Replay a selection (operator); dry_run (a JSON boolean) previews it",
                "requestBody": _body(ReplayBody),
                "responses": _responses("counts", "400", "409", "413", "422")}},
            "/api/purge": {"post": {
                "operationId": "purge",
                "summary": "Delete a failure topic's records so far (admin)",
                "requestBody": _body(PurgeBody),
                "responses": _responses("deleted", "400", "413", "422")}},
            "/api/budget/release": {"post": {
                "operationId": "release_budget_hold",
                "summary": "Release a claim held over budget, saying why (operator): the "
                           "processors count it although it exceeds the budget, and book it",
                "requestBody": _body(ReleaseBody),
                "responses": _responses("the audit record", "400", "409", "413", "422")}},
            "/api/claims": {"get": {
                "operationId": "list_claims",
                "summary": "Claims by employee id and by the day their first record arrived "
                           "(viewer)",
                "parameters": _query_parameters(ClaimsQuery),
                "responses": _responses("claims", "422")}},
            "/api/claims/{asked}": {"get": {
                "operationId": "claim_journey",
                "summary": "A claim's journey: its inputs, statuses, postings, ERP answers and "
                           "failures in order (viewer). Asked by claim id, invoice number, "
                           "posting id, ERP document number or event id",
                "parameters": [{"name": "asked", "in": "path", "required": True, "schema": {
                    "type": "string", "minLength": 1, "maxLength": 200}}],
                "responses": _responses("the journey", "400", "404")}},
            "/api/audit": {"get": {
                "operationId": "audit_trail",
                "summary": "The audit trail and its verification (viewer)",
                "responses": _responses("records")}},
        },
    }  # fmt: skip
