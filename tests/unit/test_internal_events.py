import pytest

from erpbridge.codec import DecodeError
from streams.internal_events import is_legacy, read_legacy


def test_json_internal_events_from_before_the_contracts_are_still_read() -> None:
    assert read_legacy(b'{"kind": "tick"}') == {"kind": "TICK"}
    answer = read_legacy(b'{"kind": "invoice", "invoice": "1-2", "answer": "valid", "note": null,'
                         b' "owner": null, "facts": null}')  # fmt: skip
    assert answer["kind"] == "INVOICE_ANSWER" and answer["invoice"] == "1-2"
    assert read_legacy(b'{"kind": "uncite", "claim_id": "C1"}') == {
        "kind": "UNCITE",
        "claim_id": "C1",
    }
    assert is_legacy(b"{") and not is_legacy(b"\x00\x00\x00\x00\x07")
    with pytest.raises(DecodeError, match="neither Avro nor a legacy JSON event"):
        read_legacy(b"{not json")
