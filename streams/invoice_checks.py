"""Tax arithmetic of a VAT invoice (增值税发票 / 数电票), checked before a claim may rely on it.

- net + tax = total, exactly;
- the lines add up to the header's net and tax, exactly;
- each line's tax = net x rate to within one fen (issuers round per line; some compute tax from
  the tax-inclusive price, which moves the result by at most a fen);
- without lines, the header's tax = net x rate (when a rate is given) to within one fen;
- a passenger ticket has its passenger block, whose fare parts add up to the total and yield a
  VAT (see :mod:`streams.passenger_vat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from streams.passenger_vat import TICKET_KINDS, ticket_taxes

FEN = Decimal("0.01")
RATE = Decimal("0.0001")


def tax_problems(invoice: Mapping[str, Any]) -> list[str]:
    """Every arithmetic problem of the invoice record, as operator-readable text; [] when fine."""
    problems = []
    net, tax, total = (Decimal(invoice[k]) for k in ("amount_net", "tax_amount", "total"))
    if net + tax != total:
        problems.append(f"amount_net {net} + tax_amount {tax} = {net + tax}, not total {total}")
    lines = invoice.get("lines") or []
    if lines:
        line_net = sum((Decimal(line["amount_net"]) for line in lines), Decimal(0))
        line_tax = sum((Decimal(line["tax_amount"]) for line in lines), Decimal(0))
        if line_net != net:
            problems.append(f"lines' amount_net add up to {line_net}, not amount_net {net}")
        if line_tax != tax:
            problems.append(f"lines' tax_amount add up to {line_tax}, not tax_amount {tax}")
        for n, line in enumerate(lines, 1):
            problem = _rate_problem(f"lines[{n}]", line["amount_net"], line["tax_rate"],
                                    line["tax_amount"])  # fmt: skip
            if problem:
                problems.append(problem)
    elif invoice.get("tax_rate") is not None:
        problem = _rate_problem("invoice", net, invoice["tax_rate"], tax)
        if problem:
            problems.append(problem)
    return problems + _ticket_problems(invoice)


def _ticket_problems(invoice: Mapping[str, Any]) -> list[str]:
    kind, passenger = invoice["invoice_type"], invoice.get("passenger")
    if kind not in TICKET_KINDS:
        return [] if passenger is None else [f"a {kind} invoice has a passenger block"]
    if passenger is None:
        return [f"a {kind} has no passenger block (traveller, fare)"]
    parts = _fare_parts(passenger)
    if sum(parts[:3]) != Decimal(invoice["total"]):
        return [f"passenger: fare, fuel surcharge and development fund add up to "
                f"{sum(parts[:3])}, not total {invoice['total']}"]  # fmt: skip
    try:
        ticket_taxes(kind, *parts)
    except ValueError as exc:
        return [f"passenger: {exc}"]
    return []


def _fare_parts(passenger: Mapping[str, Any]) -> tuple[Decimal, Decimal, Decimal, Decimal | None]:
    fuel, fund, stated = (passenger.get(name) for name in (
        "fuel_surcharge", "development_fund", "stated_vat"))  # fmt: skip
    return (Decimal(passenger["fare"]), Decimal(fuel or 0), Decimal(fund or 0),
            None if stated is None else Decimal(stated))  # fmt: skip


def _rate_problem(where: str, net: Any, rate: Any, tax: Any) -> str | None:
    expected = (Decimal(net) * Decimal(rate)).quantize(FEN)
    if abs(expected - Decimal(tax)) > FEN:
        return (f"{where}: tax_amount {tax} is not amount_net {net} x tax_rate {rate} "
                f"(= {expected}) within 0.01")  # fmt: skip
    return None


def vat_facts(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """What a claim's posting needs of the invoice to book its input VAT (JSON-safe): the kind,
    the buyer, the total, and net and tax per rate (from the lines, else the header; a ticket's
    from its fare parts, with its traveller). Call it on an invoice without tax problems."""
    passenger = invoice.get("passenger")
    if invoice["invoice_type"] in TICKET_KINDS and passenger is not None:
        return {
            "type": invoice["invoice_type"],
            "buyer_tax_id": invoice.get("buyer_tax_id"),
            "total": str(Decimal(invoice["total"])),
            "taxes": ticket_taxes(invoice["invoice_type"], *_fare_parts(passenger)),
            "traveller": {"name": passenger["traveller_name"],
                          "id_masked": passenger.get("traveller_id_masked")},
        } | _original(invoice)  # fmt: skip
    by_rate: dict[str | None, list[Decimal]] = {}
    lines = invoice.get("lines") or []
    parts = [(line["tax_rate"], line["amount_net"], line["tax_amount"]) for line in lines]
    if not parts:
        parts = [(invoice.get("tax_rate"), invoice["amount_net"], invoice["tax_amount"])]
    for rate, net, tax in parts:
        key = None if rate is None else str(Decimal(rate).quantize(RATE))
        sums = by_rate.setdefault(key, [Decimal(0), Decimal(0)])
        sums[0] += Decimal(net)
        sums[1] += Decimal(tax)
    return {
        "type": invoice["invoice_type"],
        "buyer_tax_id": invoice.get("buyer_tax_id"),
        "total": str(Decimal(invoice["total"])),
        "taxes": [
            {"rate": rate, "base": str(base), "tax": str(tax)}
            for rate, (base, tax) in by_rate.items()
        ],  # fmt: skip
    } | _original(invoice)


def _original(invoice: Mapping[str, Any]) -> dict[str, str]:
    """The archived original's digest, when the source archived one."""
    digest = invoice.get("original_sha256")
    return {"original_sha256": digest} if digest else {}
