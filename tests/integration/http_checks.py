"""What every HTTP surface of ours promises a caller, checked the same way for each."""

from __future__ import annotations

from typing import Any

import httpx


def documented_answer(reply: httpx.Response) -> dict[str, Any]:
    """No 5xx and no traceback; JSON; a refusal in the error shape (error, message, problems)."""
    assert reply.status_code < 500, f"{reply.status_code}: {reply.text[:500]}"
    assert "Traceback" not in reply.text
    assert reply.headers.get("Content-Type", "").startswith("application/json"), (
        f"{reply.status_code} {reply.headers.get('Content-Type')}: {reply.text[:300]}"
    )
    answer = reply.json()
    if reply.status_code >= 400:
        assert isinstance(answer["error"], str) and isinstance(answer["message"], str), answer
        assert isinstance(answer["problems"], list), answer
    return dict(answer)
