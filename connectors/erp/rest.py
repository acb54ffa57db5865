"""Generic REST ERP writer: for gateways in front of Kingdee, Yonyou, SAP and the like.

Configured, not coded (``ERPBRIDGE_REST_ERP_*``): the endpoint, bearer or basic auth, the
idempotency header, how a posting maps to the request body, and which statuses mean what.

Booking is idempotent twice over: the writer first looks the posting id up (``lookup_path``),
and the create request carries the posting id in the idempotency header; a 409 answer means
"already there" and is looked up, not refused.

The body mapping is a JSON template: ``"$posting.<field>"``, inside
``{"$each": "lines", "template": {...}}`` ``"$line.<field>"``, and inside
``{"$each": "vat", "template": {...}}`` (every input VAT record of every line) ``"$vat.<field>"``
are replaced; anything else is sent as written. An ``$each`` that is an item of a list is
spliced into it (a voucher's entries: the lines, then their VAT, then the payable). Posting
fields: posting_id, claim_id, claim_version, source_system, kind (BOOKING or REVERSAL),
reverses, employee_id, employee_name, cost_centre, department, cost_centre_name,
department_name (the ERP's names of both, when the reference data has them), posting_date,
fiscal_year,
fiscal_month, fiscal_period (YYYY-MM), currency, total, total_minor, tax (the deductible input
VAT inside total), net (total less tax). Line fields: no (from 1), account_code, description,
amount, amount_minor, net (amount less its input VAT), invoice_refs, input_vat (a list of
{invoice_ref, tax_rate, base, tax}). VAT fields: invoice_ref, tax_rate, base, tax. Amounts are
decimal strings in the posting currency (negative in a reversal).

Ready templates for Kingdee and Yonyou vouchers are in ``connectors/erp/templates`` (their
writers: :mod:`connectors.erp.kingdee`, :mod:`connectors.erp.yonyou`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Collection, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.erp.base import Booking, MasterData, Payment, book_each
from connectors.erp.errors import ErpError, PermanentErpError, RetryableErpError
from connectors.erp.rest_masterdata import MasterDataLists, read_master_data
from erpbridge.failures.classify import RETRYABLE_STATUSES, http_failure
from erpbridge.model import InputVat, Posting, PostingLine
from erpbridge.tls import check_ca_file, http_verify

DEFAULT_TEMPLATE: dict[str, Any] = {
    "external_ref": "$posting.posting_id",
    "claim_id": "$posting.claim_id",
    "employee": {"code": "$posting.employee_id", "name": "$posting.employee_name"},
    "department": "$posting.department",
    "cost_centre": "$posting.cost_centre",
    "date": "$posting.posting_date",
    "currency": "$posting.currency",
    "total": "$posting.total",
    "lines": {"$each": "lines", "template": {
        "account": "$line.account_code", "amount": "$line.amount", "net": "$line.net",
        "memo": "$line.description", "invoices": "$line.invoice_refs",
        "input_vat": "$line.input_vat"}},
    "input_vat": "$posting.tax",
}  # fmt: skip
# A reversal (a red-letter invoice offset a booked claim): a credit note, amounts negative.
DEFAULT_REVERSAL_TEMPLATE: dict[str, Any] = {
    **DEFAULT_TEMPLATE, "kind": "$posting.kind", "reverses": "$posting.reverses",
}  # fmt: skip


class RestErpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_REST_ERP_", frozen=True,
                                      extra="ignore")  # fmt: skip

    name: str = "rest"
    base_url: str = Field("http://127.0.0.1:8070", pattern=r"^https?://")
    create_path: str = "/vouchers"
    lookup_path: str = "/vouchers?external_ref={reference}"
    health_path: str = "/"
    auth: Literal["none", "bearer", "basic"] = "none"
    token: SecretStr = SecretStr("")
    user: str = ""
    password: SecretStr = SecretStr("")
    idempotency_header: str = "Idempotency-Key"
    template_file: Path | None = None  # JSON body template; default: DEFAULT_TEMPLATE
    # a reversal's body (a credit note): default DEFAULT_REVERSAL_TEMPLATE; and where it goes
    reversal_template_file: Path | None = None
    reversal_create_path: str | None = None  # unset: create_path
    id_field: str = "id"  # dotted paths into the ERP's answer
    number_field: str = "number"
    voucher_field: str = "voucher_number"
    state_field: str = "status"
    # reading back, for reconciliation: the document's reference, amounts and date in a lookup's
    # answer, the states that mean "posted", and (optional) a listing of documents by date
    reference_field: str = "external_ref"
    total_field: str = "total"
    tax_field: str = "input_vat"
    date_field: str = "date"
    posted_states: frozenset[str] = frozenset({"posted", "booked", "audited", "approved"})
    list_path: str | None = "/vouchers?from={start}&to={end}"
    # optional: many documents in one request (comma-separated references), as Kingdee's bill
    # query or an OData "in" filter offer; without it, one lookup per reference
    batch_lookup_path: str | None = None  # e.g. /vouchers?external_refs={references}
    batch_lookup_size: int = Field(200, ge=1, le=5000)
    # optional: many postings booked in one request, as Kingdee's BatchSave and similar gateways
    # take them: {"<batch_items_field>": [body, ...]}, answered with one result per item, in
    # order, at ``batch_results_field``, each carrying its own ``batch_status_field`` (an HTTP
    # status: 201 booked, 409 already there, 422 refused, 503 try again...) and the document
    batch_create_path: str | None = None  # e.g. /vouchers/batch
    batch_items_field: str = "items"
    batch_results_field: str = "results"
    batch_status_field: str = "status"
    batch_document_field: str = "document"
    batch_error_field: str = "error"
    lookup_workers: int = Field(8, ge=1, le=64)  # concurrent lookups while reconciling
    # the payment loop (connectors.payment_watch) reads the same lookups: a document in one of
    # ``paid_states`` is paid, its amount, date and payment voucher at these dotted paths
    paid_states: frozenset[str] = frozenset({"paid", "settled"})
    paid_amount_field: str = "paid_amount"  # absent: the total
    paid_date_field: str = "paid_on"
    payment_reference_field: str = "payment_number"
    # master data the gateway lists (connectors.erp.rest_masterdata): JSON, kind -> list endpoint
    masterdata: MasterDataLists = MasterDataLists()
    success_statuses: frozenset[int] = frozenset({200, 201, 202})
    exists_statuses: frozenset[int] = frozenset({409})
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES
    timeout_s: float = Field(30.0, gt=0)
    # the CA that signed an https gateway's certificate (empty: the system's trust store)
    ca_file: Annotated[str, AfterValidator(check_ca_file)] = ""

    @model_validator(mode="after")
    def _credentials(self) -> RestErpSettings:
        if self.auth == "bearer" and not self.token.get_secret_value():
            raise ValueError("auth=bearer needs ERPBRIDGE_REST_ERP_TOKEN")
        if self.auth == "basic" and not self.user:
            raise ValueError("auth=basic needs ERPBRIDGE_REST_ERP_USER and _PASSWORD")
        if "{reference}" not in self.lookup_path:
            raise ValueError("lookup_path must contain {reference}")
        if self.batch_lookup_path is not None and "{references}" not in self.batch_lookup_path:
            raise ValueError("batch_lookup_path must contain {references} (or be unset)")
        if self.list_path is not None and not {"{start}", "{end}"} <= set(
            re.findall(r"\{\w+\}", self.list_path)
        ):
            raise ValueError("list_path must contain {start} and {end} (or be unset)")
        return self

    def template(self, reversal: bool = False) -> dict[str, Any]:
        path = self.reversal_template_file if reversal else self.template_file
        if path is None:
            return DEFAULT_REVERSAL_TEMPLATE if reversal else DEFAULT_TEMPLATE
        return dict(json.loads(path.read_text(encoding="utf-8")))


class RestErpWriter:
    def __init__(self, config: RestErpSettings) -> None:
        self.name = config.name
        self._config = config
        self._templates = {"BOOKING": config.template(), "REVERSAL": config.template(True)}
        for kind, template in self._templates.items():
            try:  # a template naming an unknown field fails at start-up, not at a booking
                render(template, _SAMPLE)
            except ValueError as exc:
                raise ValueError(f"the {kind.lower()} body template: {exc}") from exc
        auth: httpx.Auth | None = None
        headers = {"Accept": "application/json"}
        if config.auth == "basic":
            auth = httpx.BasicAuth(config.user, config.password.get_secret_value())
        elif config.auth == "bearer":
            headers["Authorization"] = f"Bearer {config.token.get_secret_value()}"
        self._http = httpx.Client(base_url=config.base_url, auth=auth, headers=headers,
                                  timeout=config.timeout_s,
                                  verify=http_verify(config.ca_file))  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def probe(self) -> bool:
        try:
            return self._http.get(self._config.health_path).status_code < 500
        except httpx.HTTPError:
            return False

    def book(self, posting: Posting) -> Booking:
        found = self.lookup(posting.posting_id)
        if found is not None:
            return self._booking(posting, found, already_booked=True)
        body = render(self._templates[posting.kind], posting)
        path = self._config.create_path
        if posting.kind == "REVERSAL" and self._config.reversal_create_path:
            path = self._config.reversal_create_path
        reply = self._request(
            "POST",
            path,
            json=body,
            headers={self._config.idempotency_header: posting.posting_id},
        )
        if reply.status_code in self._config.exists_statuses:
            found = self.lookup(posting.posting_id)
            if found is None:
                raise RetryableErpError(f"{self.name}: HTTP {reply.status_code} says "
                                        f"{posting.posting_id} exists, but the lookup finds "
                                        "nothing yet")  # fmt: skip
            return self._booking(posting, found, already_booked=True)
        return self._booking(posting, json_answer(reply), already_booked=False)

    def book_many(self, postings: Sequence[Posting]) -> list[Booking | ErpError]:
        """One request for the batch when the gateway has a batch create, else one a posting.
        What the gateway already holds is looked up first (in one request with its batch lookup)
        and answered as already booked; the rest go in one create, each with its own outcome."""
        config = self._config
        if config.batch_create_path is None or len(postings) < 2:
            return book_each(self, postings)
        known = self._already_there(postings)
        fresh = [p for p in postings if p.posting_id not in known]
        outcomes: dict[str, Booking | ErpError] = {
            p.posting_id: self._booking(p, known[p.posting_id], already_booked=True)
            for p in postings if p.posting_id in known}  # fmt: skip
        if fresh:
            body = {config.batch_items_field: [render(self._templates[p.kind], p) for p in fresh]}
            key = hashlib.sha256("\n".join(p.posting_id for p in fresh).encode()).hexdigest()
            answer = json_answer(self._request("POST", config.batch_create_path, json=body,
                                         headers={config.idempotency_header: key}))  # fmt: skip
            results = at_path(answer, config.batch_results_field)
            if not isinstance(results, list) or len(results) != len(fresh):
                raise PermanentErpError(f"{self.name}: the batch answer has no "
                                        f"{config.batch_results_field!r} list of {len(fresh)}: "
                                        f"{str(answer)[:300]}")  # fmt: skip
            for posting, result in zip(fresh, results, strict=True):
                outcomes[posting.posting_id] = self._item_outcome(posting, result)
        return [outcomes[p.posting_id] for p in postings]

    def _already_there(self, postings: Sequence[Posting]) -> dict[str, dict[str, Any]]:
        references = [p.posting_id for p in postings]
        found = self.lookup_many(references)
        if found is None:
            answers = ((r, self.lookup(r)) for r in references)
            return {r: answer for r, answer in answers if answer is not None}
        field, wanted = self._config.reference_field, set(references)
        return {str(at_path(a, field)): a for a in found if at_path(a, field) in wanted}

    def _item_outcome(self, posting: Posting, result: Any) -> Booking | ErpError:
        config = self._config
        status = at_path(result, config.batch_status_field)
        document = at_path(result, config.batch_document_field)
        error = at_path(result, config.batch_error_field)
        text = f"{self.name}: {posting.posting_id} in a batch answered {status}: {error or result}"
        try:
            if status in config.success_statuses:
                return self._booking(posting, document, already_booked=False)
            if status in config.exists_statuses:
                found = self.lookup(posting.posting_id)
                if found is None:
                    return RetryableErpError(f"{text}, and the lookup finds nothing yet")
                return self._booking(posting, found, already_booked=True)
        except ErpError as exc:
            return exc
        if isinstance(status, int) and status in config.retry_statuses:
            return RetryableErpError(text[:500])
        return PermanentErpError(text[:500])

    def lookup(self, reference: str) -> dict[str, Any] | None:
        """The ERP's document with this external reference, as it answers, or None."""
        path = self._config.lookup_path.format(reference=quote(reference, safe=""))
        reply = self._request("GET", path, allow={404})
        if reply.status_code == 404:
            return None
        found = json_answer(reply)
        if isinstance(found, list):
            return dict(found[0]) if found else None
        return dict(found) if found else None

    def payments(self, references: Sequence[str]) -> dict[str, Payment]:
        """The paid ones among the documents of ``references`` (read with the batch lookup when
        the gateway has one, else one lookup each)."""
        config = self._config
        found = self.lookup_many(references) if references else []
        if found is None:
            found = [doc for doc in (self.lookup(r) for r in references) if doc is not None]
        paid: dict[str, Payment] = {}
        for document in found:
            if str(at_path(document, config.state_field) or "") not in config.paid_states:
                continue
            reference = str(at_path(document, config.reference_field))
            amount = at_path(document, config.paid_amount_field)
            amount = at_path(document, config.total_field) if amount is None else amount
            day = str(at_path(document, config.paid_date_field) or "")[:10]
            try:
                paid_on = datetime.date.fromisoformat(day)
                minor = int((Decimal(str(amount)) * 100).to_integral_value())
            except (ValueError, ArithmeticError):
                raise PermanentErpError(f"{self.name}: the payment of {reference} does not read "
                                        f"(amount {amount!r}, date {day!r})") from None  # fmt: skip
            number = at_path(document, config.payment_reference_field)
            paid[reference] = Payment(
                reference, minor, paid_on, "" if number is None else str(number)
            )
        return paid

    def master_data(self) -> MasterData:
        """What the gateway's master-data lists hold (``masterdata``), each kind read whole."""
        if not self._config.masterdata.kinds():
            raise PermanentErpError(f"{self.name}: no master-data lists are configured "
                                    "(ERPBRIDGE_REST_ERP_MASTERDATA)")  # fmt: skip

        def get(path: str, query: Any) -> Any:
            return json_answer(self._request("GET", path, params=dict(query)))

        return read_master_data(self.name, self._config.masterdata, get, at_path)

    def lookup_many(self, references: Sequence[str]) -> list[dict[str, Any]] | None:
        """The documents with these references in one request (``batch_lookup_path``), or None
        if the gateway offers no such lookup."""
        if self._config.batch_lookup_path is None:
            return None
        joined = ",".join(quote(reference, safe="") for reference in references)
        return self._get_list(self._config.batch_lookup_path.format(references=joined))

    def listing(self, start: datetime.date, end: datetime.date) -> list[dict[str, Any]] | None:
        """The documents dated ``start`` to ``end`` (``list_path``), or None if not configured."""
        if self._config.list_path is None:
            return None
        path = self._config.list_path.format(start=start.isoformat(), end=end.isoformat())
        return self._get_list(path)

    def _get_list(self, path: str) -> list[dict[str, Any]]:
        found = json_answer(self._request("GET", path))
        if not isinstance(found, list):
            raise PermanentErpError(f"{self.name}: {path[:200]} answered no list: "
                                    f"{str(found)[:300]}")  # fmt: skip
        return [dict(item) for item in found]

    def _request(self, method: str, path: str, allow: frozenset[int] | set[int] = frozenset(),
                 **kwargs: Any) -> httpx.Response:  # fmt: skip
        config = self._config
        ok = config.success_statuses | config.exists_statuses | allow
        return call_gateway(self._http, self.name, method, path, ok=ok,
                            retry_on=config.retry_statuses, **kwargs)  # fmt: skip

    def _booking(self, posting: Posting, answer: Any, already_booked: bool) -> Booking:
        config = self._config
        document_id = at_path(answer, config.id_field)
        if document_id is None:
            raise PermanentErpError(f"{self.name}: the answer has no {config.id_field!r}: "
                                    f"{str(answer)[:300]}")  # fmt: skip
        number, voucher = (
            at_path(answer, config.number_field),
            at_path(answer, config.voucher_field),
        )
        return Booking(
            reference=posting.posting_id,
            document_id=str(document_id),
            number=None if number is None else str(number),
            state=str(at_path(answer, config.state_field) or "booked"),
            total=posting.money(posting.total_minor),
            already_booked=already_booked,
            voucher=None if voucher is None else str(voucher),
        )


class TemplateGateway:
    """What the ready adapters (Kingdee, Yonyou) share: a body template from a file, one HTTP
    client to the gateway, and a probe that any answer but a server error passes."""

    def __init__(self, template_file: Path, base_url: str, timeout_s: float,
                 http: httpx.Client | None = None, ca_file: str = "") -> None:  # fmt: skip
        self._template = json.loads(template_file.read_text(encoding="utf-8"))
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout_s,
                                          verify=http_verify(ca_file))  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def probe(self) -> bool:
        try:
            return self._http.get("").status_code < 500
        except httpx.HTTPError:
            return False


def call_gateway(http: httpx.Client, name: str, method: str, path: str, *,
                 ok: Collection[int] = frozenset({200, 201, 202}),
                 retry_on: frozenset[int] = RETRYABLE_STATUSES,
                 **kwargs: Any) -> httpx.Response:  # fmt: skip
    """One request to an ERP gateway: timeouts, unreachable hosts and ``retry_on`` statuses
    raise RetryableErpError (honouring Retry-After), other statuses outside ``ok``
    PermanentErpError."""
    try:
        reply = http.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetryableErpError(f"{name}: {method} {path} timed out") from exc
    except httpx.TransportError as exc:
        raise RetryableErpError(f"{name}: {method} {path} unreachable: {exc}") from exc
    if reply.status_code in ok:
        return reply
    text = f"{name}: {method} {path} answered HTTP {reply.status_code}: {reply.text[:500]}"
    raise http_failure(reply.status_code, reply.headers, text, retry_on=retry_on,
                       retryable=RetryableErpError, permanent=PermanentErpError)  # fmt: skip


_SAMPLE = Posting(
    "P",
    "C",
    "src",
    "E1",
    "name",
    datetime.date(2026, 1, 1),
    "CNY",
    (PostingLine("5.2.2", "x", 106, ("I1",), (InputVat("I1", Decimal("0.06"), 100, 6),)),),
    106,
)


def render(template: Any, posting: Posting, line: PostingLine | None = None,
           vat: InputVat | None = None) -> Any:  # fmt: skip
    """The request body for ``posting`` from ``template`` (see the module doc)."""
    if isinstance(template, dict):
        if "$each" in template:
            return _each(template, posting)
        return {key: render(value, posting, line, vat) for key, value in template.items()}
    if isinstance(template, list):
        found: list[Any] = []
        for item in template:
            if isinstance(item, dict) and "$each" in item:
                found.extend(_each(item, posting))
            else:
                found.append(render(item, posting, line, vat))
        return found
    if isinstance(template, str) and template.startswith("$posting."):
        return _posting_field(posting, template.removeprefix("$posting."))
    if isinstance(template, str) and template.startswith("$line."):
        if line is None:
            raise ValueError(f"{template} outside a $each over lines")
        return _line_field(posting, line, template.removeprefix("$line."))
    if isinstance(template, str) and template.startswith("$vat."):
        if vat is None:
            raise ValueError(f"{template} outside a $each over vat")
        name = template.removeprefix("$vat.")
        if name not in _VAT_FIELDS:
            raise ValueError(f"unknown VAT field {template}")
        return _vat_fields(posting, vat)[name]
    return template


def _each(template: dict[str, Any], posting: Posting) -> list[Any]:
    if template["$each"] == "lines":
        return [render(template["template"], posting, each) for each in posting.lines]
    if template["$each"] == "vat":
        return [render(template["template"], posting, each, vat)
                for each in posting.lines for vat in each.input_vat]  # fmt: skip
    raise ValueError(f"$each supports 'lines' and 'vat', not {template['$each']!r}")


_VAT_FIELDS = {"invoice_ref", "tax_rate", "base", "tax"}


def _vat_fields(posting: Posting, vat: InputVat) -> dict[str, Any]:
    return {"invoice_ref": vat.invoice_ref,
            "tax_rate": None if vat.tax_rate is None else str(vat.tax_rate),
            "base": str(posting.money(vat.base_minor)),
            "tax": str(posting.money(vat.tax_minor))}  # fmt: skip


_POSTING_FIELDS = {
    "kind",
    "reverses",
    "posting_id",
    "claim_id",
    "claim_version",
    "source_system",
    "employee_id",
    "employee_name",
    "cost_centre",
    "department",
    "cost_centre_name",
    "department_name",
    "currency",
    "total_minor",
}


def _posting_field(posting: Posting, name: str) -> Any:
    if name == "total":
        return str(posting.money(posting.total_minor))
    if name == "tax":
        return str(posting.money(posting.tax_minor))
    if name == "net":
        return str(posting.money(posting.total_minor - posting.tax_minor))
    if name == "posting_date":
        return posting.posting_date.isoformat()
    if name == "fiscal_year":
        return posting.posting_date.year
    if name == "fiscal_month":
        return posting.posting_date.month
    if name == "fiscal_period":
        return f"{posting.posting_date:%Y-%m}"
    if name in _POSTING_FIELDS:
        return getattr(posting, name)
    raise ValueError(f"unknown posting field $posting.{name}")


def _line_field(posting: Posting, line: PostingLine, name: str) -> Any:
    if name == "amount":
        return str(posting.amount(line))
    if name == "net":
        return str(posting.money(line.net_minor))
    if name == "input_vat":
        return [_vat_fields(posting, vat) for vat in line.input_vat]
    if name == "no":
        return next(n for n, each in enumerate(posting.lines, 1) if each is line)
    if name == "invoice_refs":
        return list(line.invoice_refs)
    if name in {"account_code", "description", "amount_minor"}:
        return getattr(line, name)
    raise ValueError(f"unknown line field $line.{name}")


def json_answer(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError as exc:
        raise PermanentErpError(f"the ERP answered HTTP {reply.status_code} with no JSON: "
                                f"{reply.text[:300]}") from exc  # fmt: skip


def at_path(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
