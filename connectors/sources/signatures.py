"""Webhook request signatures: HMAC-SHA256 over ``<timestamp>.<body>`` with a per-source secret.

Headers: ``X-Erpbridge-Source`` (who), ``X-Erpbridge-Timestamp`` (unix seconds),
``X-Erpbridge-Signature: sha256=<hex>``. Requests outside the time window are refused, so a
captured request cannot be replayed later.

A source may have two secrets at once while it rotates (``ERPBRIDGE_WEBHOOK_SECRETS`` maps a
source to one secret or to a list): a request signed with either is accepted, and
``verify_slot`` says which, so the webhook can count each (``erpbridge_webhook_secret_used``)
and an operator can see when the old one stops being used and remove it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

SOURCE_HEADER = "X-Erpbridge-Source"
TIMESTAMP_HEADER = "X-Erpbridge-Timestamp"
SIGNATURE_HEADER = "X-Erpbridge-Signature"


class SignatureRefused(Exception):
    """Why a request is not authentic; ``code`` is the machine-readable error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signed_headers(
    source: str, secret: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers an upstream system sends (used by our tests, clients and docs)."""
    timestamp = int(time.time() if now is None else now)
    return {SOURCE_HEADER: source, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body)}  # fmt: skip


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str | Sequence[str]],
    max_skew_s: float,
    now: float | None = None,
) -> str:
    """Return the authenticated source name, or raise :class:`SignatureRefused`."""
    return verify_slot(headers, body, secrets, max_skew_s, now)[0]


def verify_slot(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str | Sequence[str]],
    max_skew_s: float,
    now: float | None = None,
) -> tuple[str, int]:
    """The authenticated source and which of its secrets (0: the first listed) signed the
    request, or raise :class:`SignatureRefused`."""
    source = headers.get(SOURCE_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not (source and stamp and signature):
        raise SignatureRefused(
            "signature_missing",
            f"{SOURCE_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required",
        )
    if not TIMESTAMP.fullmatch(stamp):  # bounded before anything is done with it
        raise SignatureRefused("timestamp_invalid", f"{TIMESTAMP_HEADER} must be unix seconds "
                               "(1 to 12 ASCII digits)")  # fmt: skip
    configured = secrets.get(source)
    if not configured:
        raise SignatureRefused("unknown_source", f"no secret is configured for source {source!r}")
    skew = abs((time.time() if now is None else now) - int(stamp))
    if skew > max_skew_s:
        raise SignatureRefused(
            "timestamp_expired",
            f"timestamp is {skew:.0f}s away from now; at most {max_skew_s:.0f}s is accepted",
        )
    candidates = [configured] if isinstance(configured, str) else list(configured)
    # every candidate is compared (constant time each), so timing does not tell which matched
    matches = [hmac.compare_digest(sign(secret, int(stamp), body), signature)
               for secret in candidates]  # fmt: skip
    if not any(matches):
        raise SignatureRefused("signature_invalid", "signature does not match the body")
    return source, matches.index(True)
