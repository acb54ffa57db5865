"""What the demo (samples/) books in a stack's Tryton, and the check of it."""

from __future__ import annotations

from collections import Counter

from connectors.erp.tryton import TrytonSettings
from tests.integration.pipeline import posted_in_tryton

# claim -> amount (fen), each booked once
ALWAYS_BOOKED = {"EXP-2026-0001": 55300, "EXP-2026-0003": 36850, "EXP-2026-0004": 8600,
                 "EXP-2026-0006": 85463}  # fmt: skip
# Two claims of 1,280.00 cite one invoice and were submitted the same day: the one that is
# ready first keeps it (the earlier, by claim id, when the invoice case knows both before
# either is ready), the other is a duplicate. Which one depends on how the partitions are read.
ONE_OF = ({"EXP-2026-0002", "EXP-2026-0007"}, 128000)
NEVER_BOOKED = ["EXP-2026-0005", "EXP-2026-0008", "EXP-2026-0009"]
CLAIMS = [*ALWAYS_BOOKED, *sorted(ONE_OF[0]), *NEVER_BOOKED]


def demo_booking_problems(erp: TrytonSettings) -> list[str]:
    """What is wrong with the demo's bookings in ``erp`` (nothing: an empty list)."""
    booked = posted_in_tryton(erp, CLAIMS)
    times = Counter(invoice["reference"] for invoice in booked)
    amounts = {inv["reference"]: round(float(inv["total_amount"]) * 100) for inv in booked}
    problems = [f"{claim} booked {n} times" for claim, n in times.items() if n > 1]
    problems += [f"{claim} not booked" for claim in ALWAYS_BOOKED if claim not in times]
    problems += [f"{claim} booked" for claim in NEVER_BOOKED if claim in times]
    shared = sorted(ONE_OF[0] & set(times))
    if len(shared) != 1:
        problems.append(f"of {sorted(ONE_OF[0])} (one invoice), {shared} booked, not one")
    expected = {**ALWAYS_BOOKED, **{claim: ONE_OF[1] for claim in shared}}
    problems += [f"{claim} booked at {amounts[claim]} fen, not {fen}"
                 for claim, fen in expected.items()
                 if claim in amounts and amounts[claim] != fen]  # fmt: skip
    return problems
