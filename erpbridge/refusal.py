"""A request refused by one of our HTTP surfaces (the webhook source, the ops API): its status,
a machine-readable code, a message and, for field errors, one problem per field; answered in
the one documented shape ``{"error", "message", "problems"}``, with ``Retry-After`` when asking
again later makes sense."""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str,
                 problems: list[dict[str, str]] | None = None,
                 retry_after_s: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems, self.retry_after_s = problems or [], retry_after_s

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "problems": self.problems}

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}
