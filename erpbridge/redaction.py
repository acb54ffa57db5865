"""Secrets never reach a log line: every record's message is checked for the values of the
process's secret settings (passwords, tokens, webhook secrets, keys) and each is replaced by
``***`` before any handler sees it.

The filter sits in the log record factory, so it holds for every logger and handler, also the
ones a framework (Faust) sets up after us. Secrets are read from the ``ERPBRIDGE_*`` environment
(plain values, and the values of JSON maps such as ``ERPBRIDGE_WEBHOOK_SECRETS``); values
shorter than ``MIN_LENGTH`` are not looked for (they would mask ordinary words).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MIN_LENGTH = 8
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIAL", re.IGNORECASE)
MASK = "***"


def secrets_in(environ: Mapping[str, str]) -> set[str]:
    """The secret values among ``ERPBRIDGE_*`` variables whose names say they are secrets."""
    found: set[str] = set()
    for name, value in environ.items():
        if not name.startswith("ERPBRIDGE_") or not SECRET_NAME.search(name):
            continue
        found |= _values(value)
    return {value for value in found if len(value) >= MIN_LENGTH}


def _values(raw: str) -> set[str]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {raw}
    if isinstance(parsed, dict):
        return {str(v) for vs in parsed.values() for v in (vs if isinstance(vs, list) else [vs])}
    if isinstance(parsed, list):
        return {str(v) for v in parsed}
    return {raw}


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def install(secrets: Iterable[str] | None = None) -> None:
    """Redact ``secrets`` (default: the environment's) from every log record from now on."""
    known = frozenset(secrets_in(os.environ) if secrets is None else secrets)
    if not known:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  a malformed call: its handler reports it, as ever
            return record
        clean = redact(message, known)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
