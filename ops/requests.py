"""What the ops API accepts, typed and validated before anything runs.

Every request is read here: a query string (lax: ``limit=5``, ``unmask=true``) or a JSON body
(strict: ``dry_run`` is a JSON boolean, ``rate`` a JSON number, never text that happens to look
like one, so ``"dry_run": "on"`` is refused instead of read as a replay). Whatever is wrong is a
:class:`~erpbridge.refusal.Refusal` (the shape every HTTP surface of ours answers in), with one
problem per field for field errors.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from erpbridge.boundary import InputRefused, parse_json
from erpbridge.refusal import Refusal
from ops.dlq import Selection

FailureTopic = Literal["all", "rejected", "erp_dead_letter", "feedback_dead_letter", "quarantine"]
PurgeTopic = Literal["rejected", "erp_dead_letter", "feedback_dead_letter", "quarantine"]
Filter = Annotated[str, Field(min_length=1, max_length=200)]
HeaderMatch = Annotated[str, Field(pattern=r"^[^=]{1,100}=.{0,200}$")]
FixUpPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}(\.[A-Za-z0-9_]{1,64}){0,8}$")]
ActionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


class SelectionIn(BaseModel):
    """Which failure records: a failure topic (or all) and filters, all of which must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: FailureTopic = "all"
    reason: Filter | None = None
    stage: Filter | None = None
    claim_id: Filter | None = None
    employee: Filter | None = None
    source_system: Filter | None = None
    since: datetime.datetime | None = None  # naive: UTC
    until: datetime.datetime | None = None
    header: list[HeaderMatch] = Field(default_factory=list, max_length=20)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=datetime.UTC)

    def selection(self) -> Selection:
        headers = dict(text.split("=", 1) for text in self.header)
        return Selection(topic=self.topic, reason=self.reason, stage=self.stage,
                         claim_id=self.claim_id, employee=self.employee,
                         source_system=self.source_system, since=self.since, until=self.until,
                         headers=headers)  # fmt: skip


class FailuresQuery(SelectionIn):
    unmask: bool = False  # admin only
    limit: int = Field(100, ge=0, le=10_000)  # records listed (0: all); the summary counts all


class ShowQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    unmask: bool = False


class ClaimsQuery(BaseModel):
    """Claims of an employee, by the day their first record arrived (``from``..``to``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    employee: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    start: datetime.date | None = Field(None, alias="from")
    end: datetime.date | None = Field(None, alias="to")
    limit: int = Field(100, ge=1, le=1000)


class ReplayBody(SelectionIn):
    to: Annotated[str, Field(min_length=1, max_length=249)] | None = None
    set: dict[FixUpPath, str | int | bool | None] = Field(default_factory=dict, max_length=50)
    dry_run: bool = False
    rate: float | None = Field(None, gt=0, le=10_000)
    max_replays: int = Field(3, ge=1, le=100)
    action_id: ActionId | None = None  # given: resume that action


class ReleaseBody(BaseModel):
    """A claim held over budget, released with the operator's reason (audited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    claim_id: Filter
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S")]


class PurgeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: PurgeTopic


def read_query(model: type[M], query: Any) -> M:
    """A query string as ``model`` (lax: text is read as the field's type)."""
    values: dict[str, Any] = {}
    for name in set(query.keys()):
        found = query.getall(name) if hasattr(query, "getall") else query[name]
        found = found if isinstance(found, list) else [found]
        values[name] = found if name == "header" else found[-1]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _invalid(exc) from None


def read_body(model: type[M], raw: bytes) -> M:
    """A JSON body as ``model``: within the boundary's limits, an object, strictly typed."""
    if len(raw) > MAX_BODY_BYTES:
        raise Refusal(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise Refusal(400, "malformed_body", "the body must be a JSON object")
    try:
        parsed = parse_json(raw)
    except InputRefused as exc:
        raise Refusal(400, exc.code, f"the body is not acceptable JSON: {exc.message}"
                             ) from None  # fmt: skip
    if not isinstance(parsed, dict):
        raise Refusal(400, "malformed_body", "the body must be a JSON object, not "
                             f"{_json_type(parsed)}")  # fmt: skip
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _invalid(exc) from None


def read_form(model: type[M], form: Mapping[str, Any]) -> M:
    """A console form as ``model``: its text read as the fields' types."""
    try:
        return model.model_validate(dict(form))
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> Refusal:
    problems = [{"field": ".".join(str(p) for p in error["loc"]) or "(body)",
                 "message": error["msg"]} for error in exc.errors(include_url=False)]  # fmt: skip
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return Refusal(422, "invalid_request", summary, problems)


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")  # fmt: skip
