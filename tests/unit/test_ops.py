import datetime

import pytest

from ops.audit import (
    GENESIS,
    Role,
    digest,
    from_json_lines,
    read_export,
    to_json_lines,
    verify,
    verify_export,
)
from ops.masking import mask
from ops.replay import _like, _set

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def _trail(count: int) -> list[dict]:
    records, prev = [], GENESIS
    for seq in range(1, count + 1):
        record = {"seq": seq, "action_id": f"a{seq}", "action": "dlq.replay", "actor": "cli:x",
                  "role": "admin", "at": NOW, "dry_run": False, "selection": {"topic": "all"},
                  "counts": {"replayed": seq}, "outcome": "ok", "detail": None,
                  "prev_hash": prev}  # fmt: skip
        record["hash"] = prev = digest(prev, record)
        records.append(record)
    return records


def test_the_hash_chain_names_the_first_changed_inserted_or_removed_record() -> None:
    trail = _trail(5)
    assert verify(trail).ok and verify(trail).checked == 5
    changed = [dict(r) for r in trail]
    changed[3]["counts"] = {"replayed": 0}
    assert (verify(changed).ok, verify(changed).first_bad_seq) == (False, 4)
    assert verify(trail[:2] + trail[3:]).first_bad_seq == 4  # seq 3 removed
    forged = [dict(r) for r in trail]
    forged[2] = {**forged[2], "counts": {"replayed": 9}}
    forged[2]["hash"] = digest(forged[2]["prev_hash"], forged[2])  # re-hashed, but the next
    assert verify(forged).first_bad_seq == 4  # record still points at the old hash
    assert verify(from_json_lines(to_json_lines(trail))).ok  # an export verifies the same


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR) and Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR) and not Role.OPERATOR.allows(Role.ADMIN)


def test_personal_data_is_masked_but_business_ids_stay_readable() -> None:
    shown = mask({"note": "身份证 11010519900307123X 电话 13812345678 卡号 6222021234567890123",
                  "claim_id": "EXP-2026-0001", "invoice": "26312000000123456789",
                  "invoice_code": "044031900111"})  # fmt: skip
    assert "11010519900307123X" not in shown["note"] and "13812345678" not in shown["note"]
    assert "6222021234567890123" not in shown["note"] and shown["note"].startswith("身份证 110")
    assert shown["claim_id"] == "EXP-2026-0001" and shown["invoice"] == "26312000000123456789"
    assert shown["invoice_code"] == "044031900111"


def test_a_fix_up_sets_a_field_as_its_type() -> None:
    from decimal import Decimal

    record = {"lines": [{"account_code": "9.9.9", "amount_minor": 10, "rate": Decimal("1")}],
              "final": False, "note": "x"}  # fmt: skip
    _set(record, "lines.0.account_code", "5.2.2")
    _set(record, "lines.0.amount_minor", "12")
    _set(record, "lines.0.rate", "7.1")
    _set(record, "final", "true")
    _set(record, "note", "null")
    assert record == {
        "lines": [{"account_code": "5.2.2", "amount_minor": 12, "rate": Decimal("7.1")}],
        "final": True,
        "note": None,
    }
    with pytest.raises(ValueError):
        _like(1, "not a number")


def test_an_export_cut_short_at_its_end_is_caught() -> None:
    """The chain alone verifies any prefix of itself: the end anchor and the live trail do not."""
    trail = _trail(6)
    made = trail[-1]["at"] + datetime.timedelta(seconds=5)
    full = to_json_lines(trail, made)
    assert verify_export(*read_export(full), trail).ok
    records, anchor = read_export(full)
    assert verify(records[:4]).ok  # what the chain alone says of a cut export
    cut_with_anchor = verify_export(records[:4], anchor, None)
    assert not cut_with_anchor.ok and cut_with_anchor.first_bad_seq == 5
    assert "cut from its end" in cut_with_anchor.describe()
    no_anchor = verify_export(records[:4], None, None)
    assert not no_anchor.ok and "no end anchor" in no_anchor.describe()
    # a forger who also rewrites the anchor is caught by the live trail
    forged = to_json_lines(trail[:4], made)
    against_live = verify_export(*read_export(forged), trail)
    assert not against_live.ok and against_live.first_bad_seq == 5
    assert "cut short" in against_live.describe()
    # records the trail gained after the export was made are not the export's to hold
    later = _trail(8)
    for record in later[6:]:
        record["at"] = made + datetime.timedelta(minutes=1)
    assert verify_export(*read_export(full), _rechained(later)).ok


def _rechained(records: list[dict]) -> list[dict]:
    prev = GENESIS
    for record in records:
        record["prev_hash"] = prev
        record["hash"] = prev = digest(prev, record)
    return records
