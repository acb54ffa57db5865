"""Pay a supplier invoice in Tryton through its own JSON-RPC, as an accountant would with the
invoice's Pay wizard (account.invoice.pay): the payment move on the CASH journal, reconciled
with the invoice's payable line, which makes the invoice paid."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from connectors.erp.tryton_rpc import TrytonRpc


def payment_method(rpc: TrytonRpc) -> int:
    """The "Cash" payment method (CASH journal, account 1.1.1), created the first time."""
    found = rpc.call("model.account.invoice.payment.method.search", [("name", "=", "Cash")],
                     0, 1, None)  # fmt: skip
    if found:
        return int(found[0])
    journal = rpc.call("model.account.journal.search", [("code", "=", "CASH")], 0, 1, None)[0]
    cash = rpc.call("model.account.account.search", [("code", "=", "1.1.1")], 0, 1, None)[0]
    company = rpc.context["company"]
    (method,) = rpc.call("model.account.invoice.payment.method.create", [{
        "name": "Cash", "company": company, "journal": journal,
        "debit_account": cash, "credit_account": cash}])  # fmt: skip
    return int(method)


def pay(rpc: TrytonRpc, reference: str, *, on: datetime.date | None = None,
        description: str = "") -> dict[str, Any]:  # fmt: skip
    """Pay the posted supplier invoice ``reference`` in full; returns the invoice as read after."""
    if not rpc.context:
        rpc.login()
    (invoice,) = rpc.call("model.account.invoice.search_read",
                          [("type", "=", "in"), ("reference", "=", reference)], 0, 1, None,
                          ["amount_to_pay", "currency", "party", "state"])  # fmt: skip
    context = {"active_model": "account.invoice", "active_id": invoice["id"],
               "active_ids": [invoice["id"]]}  # fmt: skip
    session, _, _ = rpc.call("wizard.account.invoice.pay.create")
    try:
        rpc.call("wizard.account.invoice.pay.execute", session, {}, "start", context=context)
        start = {"payee": invoice["party"], "amount": Decimal(invoice["amount_to_pay"]),
                 "currency": invoice["currency"], "date": on or datetime.date.today(),
                 "description": description or f"payment of {reference}",
                 "payment_method": payment_method(rpc)}  # fmt: skip
        rpc.call(
            "wizard.account.invoice.pay.execute",
            session,
            {"start": start},
            "choice",
            context=context,
        )
    finally:
        rpc.call("wizard.account.invoice.pay.delete", session)
    (after,) = rpc.call("model.account.invoice.read", [invoice["id"]],
                        ["state", "amount_to_pay", "reconciliation_lines"])  # fmt: skip
    return dict(after)
