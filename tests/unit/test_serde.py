import pytest

from erpbridge.codec import DecodeError
from erpbridge.contracts.catalog import contract
from erpbridge.contracts.serde import AvroDeserializer, AvroSerializer, SerializationError
from erpbridge.contracts.wire import BadMagicByte, TruncatedPayload, UnknownSchemaId
from tests.contract_samples import SAMPLES
from tests.fakes.registry import MemoryRegistry


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_contract_round_trips(name: str) -> None:
    registry = MemoryRegistry()
    version = contract(name).latest
    data = AvroSerializer(registry, f"{name}-value", version)(SAMPLES[name])  # type: ignore[arg-type]
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    assert AvroDeserializer(registry, version)(data) == SAMPLES[name]  # type: ignore[arg-type]


def _feedback_bytes() -> tuple[MemoryRegistry, bytes]:
    registry = MemoryRegistry()
    data = AvroSerializer(registry, "fb", contract("erp_feedback").version(2))(  # type: ignore[arg-type]
        SAMPLES["erp_feedback"]
    )
    return registry, data


@pytest.mark.parametrize("mangle, error, message", [
    (lambda b: b"\x01" + b[1:], BadMagicByte, "magic byte 0x01"),
    (lambda b: b[:4], TruncatedPayload, "shorter than the 5-byte header"),
    (lambda b: b[:-4], TruncatedPayload, "ends early"),
    (lambda b: b[:1] + (99).to_bytes(4, "big") + b[5:], UnknownSchemaId, "schema id 99"),
    (lambda b: None, TruncatedPayload, "tombstone"),
])  # fmt: skip
def test_bad_bytes_raise_typed_decode_errors(mangle, error, message) -> None:
    registry, data = _feedback_bytes()
    with pytest.raises(error, match=message) as caught:
        AvroDeserializer(registry, contract("erp_feedback").latest)(mangle(data))  # type: ignore[arg-type]
    assert isinstance(caught.value, DecodeError)  # the pipeline routes these to the DLQ


def test_a_record_that_does_not_fit_its_contract_is_refused() -> None:
    record = dict(SAMPLES["erp_feedback"], status="MAYBE")
    with pytest.raises(SerializationError, match="ErpFeedback v4"):
        AvroSerializer(MemoryRegistry(), "fb", contract("erp_feedback").latest)(record)  # type: ignore[arg-type]
