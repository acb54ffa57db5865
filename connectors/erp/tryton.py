"""Tryton writer: each posting becomes a posted supplier invoice to the employee.

The invoice's reference is the posting id, which makes the booking idempotent. A line's
deductible input VAT becomes a manual invoice tax: the exact amount the VAT invoice states, on
the ERP's input VAT tax of that rate, so the line itself carries the net expense. A reversal
posting (its amounts negative) becomes a supplier credit note the same way. The archived
original of each invoice the posting rests on is attached to the ERP invoice (``ir.attachment``),
named by its SHA-256, once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.erp.base import Booking, MasterData, Payment, book_one
from connectors.erp.errors import ErpError, PermanentErpError, RetryableErpError
from connectors.erp.tryton_masterdata import input_vat_taxes, read_master_data
from connectors.erp.tryton_rpc import TrytonRpc
from erpbridge.archive import Archive, ArchiveError
from erpbridge.model import InputVat, Posting, PostingLine
from erpbridge.tls import check_ca_file

INVOICE_FIELDS = [
    "reference",
    "number",
    "state",
    "total_amount",
    "untaxed_amount",
    "tax_amount",
    "invoice_date",
    "party.code",
    "party.name",
    "currency.code",
    "description",
    "move.number",
]
_OPEN_STATES = {"draft", "validated"}
BOOKED_STATES = {"posted", "paid"}  # paid: posted, then settled in the ERP


class TrytonSettings(BaseSettings):
    """``ERPBRIDGE_ERP_*``: the Tryton server, its database and login, and the accounts."""

    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_ERP_", frozen=True, extra="ignore")

    url: str = "http://127.0.0.1:8000"
    database: str = "erpbridge"
    user: str = "admin"
    password: SecretStr = SecretStr("admin")
    payable_account: str = "2.1.4"
    # Account of the ERP's input VAT taxes (进项税额): deductible VAT is booked on its taxes
    input_vat_account: str = "1.4.4"
    # the analytic roots whose accounts are departments and cost centres (master data)
    department_root: str = "DEPT"
    cost_centre_root: str = "CC"
    # the CA that signed an https server's certificate (empty: the system's trust store)
    ca_file: Annotated[str, AfterValidator(check_ca_file)] = ""


class TrytonWriter:
    name = "tryton"

    def __init__(self, rpc: TrytonRpc, payable_account: str, input_vat_account: str = "1.4.4",
                 archive: Archive | None = None,
                 analytic_roots: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self._rpc = rpc
        self._archive = archive
        self._payable_code = payable_account
        self._input_vat_code = input_vat_account
        self._ids: dict[tuple[str, str], int] = {}
        self._vat_taxes: dict[Decimal, int] | None = None  # rate -> input VAT tax id
        self._party_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._analytic_roots = dict(analytic_roots or {"department": "DEPT", "cost_centre": "CC"})

    @classmethod
    def from_settings(cls, config: TrytonSettings, archive: Archive | None = None) -> TrytonWriter:
        rpc = TrytonRpc(config.url, config.database, config.user,
                        config.password.get_secret_value(), ca_file=config.ca_file)  # fmt: skip
        return cls(rpc, config.payable_account, config.input_vat_account, archive,
                   {"department": config.department_root,
                    "cost_centre": config.cost_centre_root})  # fmt: skip

    def close(self) -> None:
        self._rpc.close()

    def probe(self) -> bool:
        return self._rpc.ping()

    # -- booking ---------------------------------------------------------------------------
    def book(self, posting: Posting) -> Booking:
        return book_one(self, posting)

    def book_many(self, postings: Sequence[Posting]) -> list[Booking | ErpError]:
        """One search, one create and one post for the whole batch (SQLite-backed Tryton spends
        most of a booking committing; per call, not per invoice). A refusal in the batch's post
        is narrowed down invoice by invoice, and refused drafts are deleted: nothing is left
        half-written. Retryable errors abort the whole call (the runner retries the batch;
        what was created is found as a draft and posted then).

        Another writer can book the same posting at the same time (a sink instance that held
        its partition before a rebalance): what the ERP holds once the call is done decides.
        A posting whose invoice is posted is booked, whoever posted it; Tryton refuses to post
        a second invoice with the same reference (its "similar invoice" warning), and a
        duplicate draft is deleted."""
        refs = [posting.posting_id for posting in postings]
        existing, duplicates = _one_per_reference(self.find_invoices(refs))
        refused: dict[str, ErpError] = {}
        for ref, invoice_id in duplicates:
            state = self._discard(invoice_id)
            if state in BOOKED_STATES:  # the other writer posted its copy meanwhile
                self._discard(int(existing[ref]["id"]))
                existing[ref] = {"id": invoice_id, "reference": ref, "state": state}
        drafts = {ref: inv["id"] for ref, inv in existing.items() if inv["state"] in _OPEN_STATES}
        new: list[tuple[Posting, dict[str, Any]]] = []
        for posting in postings:  # the runner never batches one claim twice
            if posting.posting_id in existing:
                continue
            try:
                new.append((posting, self.invoice_values(posting)))
            except PermanentErpError as exc:  # unknown account, currency...
                refused[posting.posting_id] = exc
        if new:
            ids = self._rpc.call("model.account.invoice.create", [values for _, values in new])
            for (posting, _), invoice_id in zip(new, ids, strict=True):
                drafts[posting.posting_id] = int(invoice_id)
        refused.update(self._post(drafts))
        booked, _ = _one_per_reference(self.find_invoices(refs))
        outcomes: list[Booking | ErpError] = []
        for posting in postings:
            ref, invoice = posting.posting_id, booked.get(posting.posting_id)
            if invoice is not None and invoice["state"] in BOOKED_STATES:
                problem = self._attach_originals(posting, int(invoice["id"]))
                already = ref in existing and existing[ref]["state"] in BOOKED_STATES
                outcomes.append(problem or _booking(invoice, already_booked=already))
            elif ref in refused:
                outcomes.append(refused[ref])
            else:
                outcomes.append(RetryableErpError(f"invoice {ref} is not posted yet"))
        return outcomes

    def _attach_originals(self, posting: Posting, invoice_id: int) -> ErpError | None:
        """Attach each archived original the posting rests on, unless attached already. An
        original missing from the archive, or changed in it, refuses the posting (the booking
        stands; the operator restores the archive and replays)."""
        if not posting.originals:
            return None
        resource = f"account.invoice,{invoice_id}"
        found = self._rpc.call("model.ir.attachment.search_read", [("resource", "=", resource)],
                               0, None, None, ["description"])  # fmt: skip
        attached = {str(a.get("description") or "").partition(" ")[0] for a in found}
        new = []
        for invoice_ref, digest in posting.originals:
            if f"sha256:{digest}" in attached:
                continue
            if self._archive is None:
                return PermanentErpError(f"the original of invoice {invoice_ref} cannot be "
                                         "attached: no archive configured")  # fmt: skip
            try:
                data = self._archive.read(digest)
            except ArchiveError as exc:
                return PermanentErpError(f"the original of invoice {invoice_ref}: {exc}")
            name = f"{invoice_ref}{_suffix(self._archive.media_type(digest))}"
            new.append({"resource": resource, "type": "data", "data": data, "name": name,
                        "description": f"sha256:{digest} original of {invoice_ref}"})  # fmt: skip
        if new:
            self._rpc.call("model.ir.attachment.create", new)
        return None

    def _post(self, drafts: dict[str, int]) -> dict[str, ErpError]:
        """Post the drafts at once; if Tryton refuses, one by one, deleting the refused ones."""
        if not drafts:
            return {}
        try:
            self._rpc.call("model.account.invoice.post", list(drafts.values()))
            return {}
        except PermanentErpError as exc:
            if len(drafts) == 1:
                ((ref, invoice_id),) = drafts.items()
                return self._refused(ref, invoice_id, exc)
        refused: dict[str, ErpError] = {}
        for ref, invoice_id in drafts.items():
            try:
                self._rpc.call("model.account.invoice.post", [invoice_id])
            except PermanentErpError as exc:
                refused.update(self._refused(ref, invoice_id, exc))
        return refused

    def _refused(self, ref: str, invoice_id: int, error: PermanentErpError) -> dict[str, ErpError]:
        """Tryton refused to post this draft: delete it, so nothing is left half-written. The
        refusal stands unless another writer posted the invoice meanwhile; a draft that cannot
        be deleted is named in it, for the operator."""
        state = self._discard(invoice_id)
        if state in BOOKED_STATES or state == "gone":
            return {}  # the outcome is what find_invoices sees afterwards
        if state == "deleted":
            return {ref: error}
        return {ref: PermanentErpError(f"{error}; its draft invoice {invoice_id} is left in the "
                                       f"ERP ({state}): delete it there")}  # fmt: skip

    def _discard(self, invoice_id: int) -> str:
        """Delete a draft invoice unless it is no longer open. Returns ``deleted``, ``gone``
        (deleted by another writer), the state that kept it (``posted``...), or why the delete
        failed."""
        state = self._state(invoice_id)
        if state is None:
            return "gone"
        if state not in _OPEN_STATES:
            return state
        try:
            self._rpc.call("model.account.invoice.delete", [invoice_id])
        except PermanentErpError as exc:  # posted (or deleted) by another writer meanwhile?
            state = self._state(invoice_id)
            if state is None:
                return "gone"
            return state if state not in _OPEN_STATES else f"not deleted: {exc}"
        return "deleted"

    def _state(self, invoice_id: int) -> str | None:
        found = self._rpc.call("model.account.invoice.search_read", [("id", "=", invoice_id)],
                               0, 1, None, ["state"])  # fmt: skip
        return str(found[0]["state"]) if found else None

    def find_invoices(self, references: Iterable[str]) -> list[dict[str, Any]]:
        refs = list(references)
        if not refs:
            return []
        return list(
            self._rpc.call(
                "model.account.invoice.search_read",
                [("type", "=", "in"), ("reference", "in", refs)],
                0,
                None,
                [("id", "ASC")],
                ["id", *INVOICE_FIELDS],
            )
        )

    def payments(self, references: Sequence[str]) -> dict[str, Payment]:
        """The paid ones among the invoices of ``references``: Tryton marks a supplier invoice
        paid once the lines reconciled with its payable line settle it (the pay wizard, or a
        payment move reconciled by hand). The payment is those lines: their amount, the last
        one's date and their moves' numbers."""
        refs = list(references)
        if not refs:
            return {}
        paid = self._rpc.call("model.account.invoice.search_read",
                              [("type", "=", "in"), ("reference", "in", refs),
                               ("state", "=", "paid")], 0, None, [("id", "ASC")],
                              ["reference", "reconciliation_lines", "currency.digits"])  # fmt: skip
        line_ids = sorted({line for invoice in paid for line in invoice["reconciliation_lines"]})
        lines = {line["id"]: line for line in self._rpc.call(
            "model.account.move.line.search_read", [("id", "in", line_ids)], 0, None, None,
            ["date", "debit", "credit", "move.number"])} if line_ids else {}  # fmt: skip
        found: dict[str, Payment] = {}
        for invoice in paid:
            settled = [lines[i] for i in invoice["reconciliation_lines"] if i in lines]
            if not settled:
                continue
            digits = int((invoice.get("currency.") or {}).get("digits") or 2)
            amount = abs(sum((Decimal(line["debit"]) - Decimal(line["credit"]) for line in settled),
                             Decimal(0)))  # fmt: skip
            numbers = sorted({str((line.get("move.") or {}).get("number") or line["id"])
                              for line in settled})  # fmt: skip
            found[invoice["reference"]] = Payment(
                invoice["reference"], int(amount.scaleb(digits)),
                max(line["date"] for line in settled), ", ".join(numbers))  # fmt: skip
        return found

    def invoices_between(self, start: Any, end: Any) -> list[dict[str, Any]]:
        """The supplier invoices of the expense-claim journal (ours) dated ``start``..``end``."""
        return list(self._rpc.call(
            "model.account.invoice.search_read",
            [("type", "=", "in"), ("journal.code", "=", "EXP"),
             ("invoice_date", ">=", start), ("invoice_date", "<=", end)],
            0, None, [("id", "ASC")], ["id", *INVOICE_FIELDS]))  # fmt: skip

    def invoice_values(self, posting: Posting) -> dict[str, Any]:
        party, address = self._employee_party(posting)
        lines = [
            {
                "type": "line",
                "account": self._account(line.account_code),
                "description": _line_text(line),
                "quantity": 1.0,
                "unit_price": posting.money(line.net_minor),
            }
            for line in posting.lines
        ]  # fmt: skip  (a reversal's are negative: a credit note)
        taxes = [self._input_vat(posting, vat) for line in posting.lines for vat in line.input_vat]
        values = {
            "type": "in", "company": self._company(), "party": party, "invoice_address": address,
            "journal": self._lookup("account.journal", "code", "EXP"),
            "account": self._account(self._payable_code),
            "currency": self._lookup("currency.currency", "code", posting.currency),
            "invoice_date": posting.posting_date, "reference": posting.posting_id,
            "description": _description(posting),
            "lines": [["create", lines]],
        }  # fmt: skip
        if taxes:
            values["taxes"] = [["create", taxes]]
        if posting.vat_notes:
            values["comment"] = "\n".join(posting.vat_notes)
        return values

    def _input_vat(self, posting: Posting, vat: InputVat) -> dict[str, Any]:
        """A manual invoice tax: Tryton keeps its amount as given, not recomputed from the base."""
        rate = "" if vat.tax_rate is None else f" {(vat.tax_rate * 100).normalize():f}%"
        values = {"description": f"进项税额 Input VAT{rate} {vat.invoice_ref}", "manual": True,
                  "account": self._account(self._input_vat_code),
                  "base": posting.money(vat.base_minor),
                  "amount": posting.money(vat.tax_minor)}  # fmt: skip
        if vat.tax_rate is not None:  # a known rate: the tax too, for the VAT reports
            values["tax"] = self._input_vat_tax(vat.tax_rate)
        return values

    def _input_vat_tax(self, rate: Decimal) -> int:
        """The input VAT tax at ``rate``, read once and again on a miss (a tax added since)."""
        if self._vat_taxes is None or rate.normalize() not in self._vat_taxes:
            found = input_vat_taxes(self._rpc, self._account(self._input_vat_code))
            self._vat_taxes = {Decimal(tax["rate"]).normalize(): int(tax["id"]) for tax in found}
        tax = self._vat_taxes.get(rate.normalize())
        if tax is None:
            raise PermanentErpError(f"no input VAT tax at rate {rate} on account "
                                    f"{self._input_vat_code} in the ERP")  # fmt: skip
        return tax

    # -- master data -----------------------------------------------------------------------
    def master_data(self) -> MasterData:
        """The employees, exchange rates, departments, cost centres, budgets, expense categories
        and input VAT taxes Tryton keeps (see
        :mod:`connectors.erp.tryton_masterdata`)."""
        return read_master_data(self._rpc, self._company(), self._analytic_roots,
                                self._input_vat_code)  # fmt: skip

    def _employee_party(self, posting: Posting) -> tuple[int, int]:
        # Claims are booked concurrently: two claims of one new employee must not both create
        # the party (its code is unique).
        with self._locks_lock:
            lock = self._party_locks.setdefault(posting.employee_id, threading.Lock())
        with lock:
            return self._find_or_create_party(posting)

    def _find_or_create_party(self, posting: Posting) -> tuple[int, int]:
        found = self._find_party(posting.employee_id)
        if found is None:
            try:
                party = self._rpc.call("model.party.party.create", [{
                    "name": posting.employee_name, "code": posting.employee_id,
                    "addresses": [["create", [{}]]]}])[0]  # fmt: skip
            except PermanentErpError as exc:
                # Another sink process (several share a group) created it between our search
                # and our create: the party's code is unique, so it is there now. The fault
                # suite sent a posting to the DLQ over this before.
                found = self._find_party(posting.employee_id)
                if found is None or "unique" not in str(exc):
                    raise
            else:
                address = self._rpc.call("model.party.address.search", [("party", "=", party)],
                                         0, 1, None)  # fmt: skip
                return int(party), int(address[0])
        party, addresses = found
        if addresses:
            return party, addresses[0]
        return party, int(self._rpc.call("model.party.address.create", [{"party": party}])[0])

    def _find_party(self, code: str) -> tuple[int, list[int]] | None:
        """The party with this code and its addresses, or None."""
        found = self._rpc.call("model.party.party.search_read", [("code", "=", code)], 0, 1, None,
                               ["addresses"])  # fmt: skip
        if not found:
            return None
        return int(found[0]["id"]), [int(a) for a in found[0]["addresses"]]

    def _company(self) -> int:
        if not self._rpc.context:
            self._rpc.login()
        return int(self._rpc.context["company"])

    def _account(self, code: str) -> int:
        return self._lookup(
            "account.account",
            "code",
            code,
            [("company", "=", self._company()), ("closed", "!=", True)],
        )

    def _lookup(
        self, model: str, field: str, value: str, extra: list[tuple[str, str, Any]] | None = None
    ) -> int:
        key = (model, value)
        if key not in self._ids:
            ids = self._rpc.call(
                f"model.{model}.search", [(field, "=", value), *(extra or [])], 0, 1, None
            )
            if not ids:
                raise PermanentErpError(f"no {model} with {field} {value!r} in the ERP")
            self._ids[key] = int(ids[0])
        return self._ids[key]


def _description(posting: Posting) -> str:
    """The invoice's description: the claim, its source, and the VAT invoices it rests on."""
    refs = sorted({ref for line in posting.lines for ref in line.invoice_refs})
    text = f"Expense claim {posting.claim_id} ({posting.source_system})"
    if posting.kind == "REVERSAL":
        text = f"Credit note reversing {posting.reverses}: {text}"
    return f"{text}; invoices {', '.join(refs)}" if refs else text


_SUFFIXES = {"application/xml": ".xml", "application/pdf": ".pdf", "application/ofd": ".ofd",
             "application/json": ".json"}  # fmt: skip


def _suffix(media_type: str | None) -> str:
    return _SUFFIXES.get(media_type or "", "")


def _line_text(line: PostingLine) -> str:
    refs = " ".join(line.invoice_refs)
    return f"{line.description} [{refs}]" if refs else line.description


def _one_per_reference(invoices: Iterable[dict[str, Any]]
                       ) -> tuple[dict[str, dict[str, Any]], list[tuple[str, int]]]:  # fmt: skip
    """Each reference's invoice (a booked one first, else its oldest), and the open drafts
    beside it: duplicates two writers created at the same time, as (reference, id)."""
    by_ref: dict[str, list[dict[str, Any]]] = {}
    for invoice in invoices:  # in id order
        by_ref.setdefault(invoice["reference"], []).append(invoice)
    chosen: dict[str, dict[str, Any]] = {}
    duplicates: list[tuple[str, int]] = []
    for ref, found in by_ref.items():
        booked = [inv for inv in found if inv["state"] in BOOKED_STATES]
        chosen[ref] = (booked or found)[0]
        duplicates += [(ref, int(inv["id"])) for inv in found
                       if inv is not chosen[ref] and inv["state"] in _OPEN_STATES]  # fmt: skip
    return chosen, duplicates


def _booking(invoice: dict[str, Any], already_booked: bool) -> Booking:
    move = invoice.get("move.") or {}
    return Booking(
        reference=invoice["reference"],
        document_id=str(invoice["id"]),
        voucher=move.get("number"),
        number=invoice.get("number"),
        state=invoice["state"],
        total=Decimal(invoice["total_amount"]),
        already_booked=already_booked,
    )
