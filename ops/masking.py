"""Personal data in failure records, masked unless the caller's role may see it (admin).

Masked wherever it appears in a string: resident ID-card numbers (18 characters, the last a digit
or X), bank card numbers (16 to 19 digits; a 10 or 12-digit invoice code stays readable),
mainland mobile numbers (11 digits from 1[3-9]) and e-mail addresses. A masked value keeps its
first and last characters, so an operator can still tell two apart.
"""

from __future__ import annotations

import re
from typing import Any

_PATTERNS = [
    re.compile(r"(?<![0-9A-Za-z])[1-9]\d{16}[\dXx](?![0-9A-Za-z])"),  # 居民身份证号
    re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"),  # mobile
    re.compile(r"(?<!\d)\d{16,19}(?!\d)"),  # bank card (16 to 19 digits)
    re.compile(r"[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+"),  # e-mail
]


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    keep = 3 if len(text) > 8 else 1
    return text[:keep] + "*" * (len(text) - keep - 2) + text[-2:]


def mask_text(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def mask(value: Any) -> Any:
    """``value`` (a decoded record, a header map, a string) with personal data masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: mask(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask(item) for item in value]
    return value
