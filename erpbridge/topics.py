"""Every topic name in one place, derived from the configured prefix, with its contract."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def claims_raw(self) -> str:
        """ExpenseClaim records as sources validated them. Key: claim id."""
        return f"{self.prefix}.claims.raw"

    @property
    def approvals_raw(self) -> str:
        """ApprovalDecision records from workflow systems. Key: claim id."""
        return f"{self.prefix}.approvals.raw"

    @property
    def invoices_raw(self) -> str:
        """Invoice records from e-invoice platforms. Key: invoice (code-)number."""
        return f"{self.prefix}.invoices.raw"

    @property
    def postings(self) -> str:
        """ErpPosting records, ready to book. Key: claim id."""
        return f"{self.prefix}.postings"

    @property
    def rejected(self) -> str:
        """Failure records (:mod:`erpbridge.failures.record`): input a source or a processor
        refused, as it came, with the reason in headers."""
        return f"{self.prefix}.rejected"

    @property
    def claim_status(self) -> str:
        """ClaimStatus records: posted, held, refused, cancelled, stalled. Key: claim id."""
        return f"{self.prefix}.claims.status"

    @property
    def reference(self) -> str:
        """Compacted: exchange rates and code mappings, see :mod:`erpbridge.reference`."""
        return f"{self.prefix}.reference"

    @property
    def claim_events(self) -> str:
        """ClaimEvent records, internal to the processors: invoice answers and deadline ticks.
        Key: claim id (none for a tick)."""
        return f"{self.prefix}.streams.claim-events"

    @property
    def invoice_refs(self) -> str:
        """InvoiceCitation records, internal to the processors: a claim starting or stopping
        to cite an invoice. Key: invoice key."""
        return f"{self.prefix}.streams.invoice-refs"

    @property
    def budget_requests(self) -> str:
        """BudgetRequest records, internal to the processors: a claim asking for, or giving back,
        its amount of a cost centre's budget. Key: budget key (cost centre|period start)."""
        return f"{self.prefix}.streams.budget-requests"

    @property
    def source_offsets(self) -> str:
        """Compacted: each polling source's last committed cursor, written in its transaction."""
        return f"{self.prefix}.source-offsets"

    @property
    def erp_dead_letter(self) -> str:
        """Failure records: postings the ERP refused for good, as they were, plus headers."""
        return f"{self.prefix}.erp.dlq"

    @property
    def erp_feedback(self) -> str:
        """ErpFeedback records: the ERP's answer per posting (document, voucher, status)."""
        return f"{self.prefix}.erp.feedback"

    @property
    def feedback_dead_letter(self) -> str:
        """Failure records: feedback the expense platform refused for good, plus headers."""
        return f"{self.prefix}.erp.feedback.dlq"

    @property
    def quarantine(self) -> str:
        """Failure records replayed more often than ``--max-replays``: kept, not replayed."""
        return f"{self.prefix}.dlq.quarantine"

    @property
    def audit(self) -> str:
        """AuditEvent records: every operator action, hash-chained. One partition, kept forever."""
        return f"{self.prefix}.audit"

    @property
    def reconciliation(self) -> str:
        """ReconciliationSummary records: one per reconciliation run, for alerting and audit."""
        return f"{self.prefix}.reconciliation"

    def failure_topics(self) -> dict[str, str]:
        """Every topic that carries failure records, by role."""
        return {"rejected": self.rejected, "erp_dead_letter": self.erp_dead_letter,
                "feedback_dead_letter": self.feedback_dead_letter,
                "quarantine": self.quarantine}  # fmt: skip

    def replay_targets(self) -> dict[str, str]:
        """The topics a failure record may be replayed to, by role: the inputs of a stage."""
        return {"claims_raw": self.claims_raw, "approvals_raw": self.approvals_raw,
                "invoices_raw": self.invoices_raw, "postings": self.postings,
                "erp_feedback": self.erp_feedback}  # fmt: skip

    def all(self) -> tuple[str, ...]:
        return (self.claims_raw, self.approvals_raw, self.invoices_raw, self.postings,
                self.rejected, self.erp_dead_letter, self.source_offsets, self.claim_status,
                self.reference, self.claim_events, self.invoice_refs, self.budget_requests,
                self.erp_feedback, self.feedback_dead_letter, self.quarantine,
                self.audit, self.reconciliation)  # fmt: skip

    def compacted(self) -> tuple[str, ...]:
        return (self.source_offsets, self.reference)

    def kept_forever(self) -> tuple[str, ...]:
        """One partition (a total order), no retention limit."""
        return (self.audit,)


# Which contract (avro_schemas/<name>/) each topic carries. The failure topics (rejected and the
# two DLQs) carry the failed input's own bytes, whatever they are, with context in headers.
CONTRACTS = {"claims_raw": "expense_claim", "approvals_raw": "approval_decision",
             "invoices_raw": "invoice", "postings": "erp_posting",
             "claim_status": "claim_status", "erp_feedback": "erp_feedback",
             "claim_events": "claim_event", "invoice_refs": "invoice_citation",
             "budget_requests": "budget_request",
             "audit": "audit_event", "reconciliation": "reconciliation_summary"}  # fmt: skip


def table_changelog(app_id: str, table: str) -> str:
    """The compacted changelog Faust keeps a stream processors' table in (its naming)."""
    return f"{app_id}-{table}-changelog"
