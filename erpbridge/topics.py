"""Every topic name in one place, derived from the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def claims_raw(self) -> str:
        """Claims as sources read them: strings, unvalidated. Key: claim id."""
        return f"{self.prefix}.claims.raw"

    @property
    def claims_normalized(self) -> str:
        """Claims in the canonical model, ready to book. Key: claim id."""
        return f"{self.prefix}.claims.normalized"

    @property
    def claims_rejected(self) -> str:
        """Input refused by a source or a processor, with the reason, for operators."""
        return f"{self.prefix}.claims.rejected"

    @property
    def erp_dead_letter(self) -> str:
        """Postings the ERP refused for good, with Kafka Connect style error headers."""
        return f"{self.prefix}.erp.dlq"

    def all(self) -> tuple[str, ...]:
        return (self.claims_raw, self.claims_normalized, self.claims_rejected, self.erp_dead_letter)
