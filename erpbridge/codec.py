"""Record keys, and the error every undecodable record raises.

Values are Avro contracts: see :mod:`erpbridge.contracts`.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes on a topic that are not a record of the expected contract."""


def encode_key(key: str) -> bytes:
    return key.encode()
