"""The peer: erpbridge's stream processing job on Quix Streams instead of Faust. Run by
``bench.suite`` on the same broker and the same input topics as the worker; not a product
component.

    python -m bench.quix_peer PREFIX GUARANTEE STATE_DIR COMMIT_INTERVAL_S

The same job, so that only the runtime differs: the same rules (the pure modules
:mod:`streams.claim_case`, :mod:`streams.invoice_case` and :mod:`streams.postings`), the same
reference data (read whole from the reference topic first), the same inputs, and the same
outputs: one Avro ``ErpPosting`` per claim, equal to the worker's field by field (``created_at``
aside; the bench checks), and every ``ClaimStatus`` the rules say. The two sides talk through
two internal topics keyed by claim and by invoice, as ours do (Quix's ``to_topic`` with a key is
its ``group_by``), in JSON, which is what a Quix user would pick (ours are Avro).

Tuned as Quix's documentation suggests for throughput: the commit interval is the worker's (the
comparison counts only then), the producer batches like the worker's (``linger.ms`` 5, 256 KiB
batches), the consumer fetches as much per partition as the worker's, Quix polls with a 0.1 s
timeout instead of its 1 s default (its main loop waits that long on an idle partition before it
produces what is pending), values decode once (raw bytes in, decoded by the product's cached Avro
decoder), the claim side's outputs are encoded where they are made (Avro or JSON bytes), so the
four branches that route them copy bytes (Quix pickles a value once for every branch but the
first: a copy of each dict was 18 % of the peer's CPU in ``bench.profile_sides``), state holds
each case as one JSON value (one RocksDB read and write per event), and no per-event logging.
"""

from __future__ import annotations

import base64
import datetime
import functools
import sys
from collections.abc import Mapping
from typing import Any

from quixstreams import Application, message_context
from quixstreams.models.serializers import Serializer
from quixstreams.models.topics import TopicConfig
from quixstreams.utils.json import dumps as json_dumps

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs
from erpbridge.model import invoice_key, invoice_ref
from erpbridge.topic_reader import read_reference
from streams import claim_case, invoice_case
from streams.claim_case import Attach, ClaimCase, Detach, Policy, Post, Reject, Status
from streams.invoice_case import InvoiceCase
from streams.postings import PostingRules, build_posting, reversal

CLAIM, APPROVAL = "claim", "approval"


class Encoded(Serializer):  # type: ignore[misc]
    """A claim-side output, ``(branch, key, value bytes)``, as its value: its bytes."""

    def __call__(self, value: tuple[str, str, bytes], ctx: Any) -> bytes:
        return value[2]


class Job:
    """The two sides' handlers, with what they share (codecs, rules, reference data)."""

    def __init__(self, settings: Settings) -> None:
        self.codecs = TopicCodecs(settings)
        self.reference = read_reference(settings)
        self.rules = PostingRules.from_settings(settings)
        self.policy = Policy.from_settings(settings)  # no budget control: no budgets here
        self.decode_claim = functools.lru_cache(maxsize=1024)(
            self.codecs.deserializer("claims_raw")
        )
        self.decode_approval = self.codecs.deserializer("approvals_raw")
        self.decode_invoice = self.codecs.deserializer("invoices_raw")
        self.encode_posting = self.codecs.serializer("postings")
        self.encode_status = self.codecs.serializer("claim_status")

    def build(self, raw: bytes, invoices: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        return build_posting(self.decode_claim(raw), self.rules, self.reference, invoices)

    # the invoice side, keyed by invoice key
    def invoice_side(
        self, value: Any, key: Any, timestamp: int, headers: Any, state: Any
    ) -> list[dict[str, Any]]:
        stored = state.get("case")
        case = None if stored is None else InvoiceCase(**stored)
        partition = message_context().partition
        if isinstance(value, bytes):
            invoice = self.decode_invoice(value)
            ikey = invoice_key(invoice["invoice_code"], invoice["invoice_number"])
            case, answers, _ = invoice_case.on_invoice(case, ikey, partition, timestamp, invoice)
        elif value["kind"] == "REVERSED":
            case, answers = invoice_case.on_reversed(
                case,
                value["invoice"],
                partition,
                timestamp,
                value["red_invoice"],
                value["red_total"],
            )
        else:
            case, answers = invoice_case.on_cited(
                case,
                value["invoice"],
                partition,
                timestamp,
                value["claim_id"],
                value["kind"],
                value.get("submitted_ms"),
            )
        state.set("case", case.__dict__)
        return [
            {
                "claim_id": a.claim_id,
                "invoice": a.invoice,
                "answer": a.answer,
                "note": a.note,
                "owner": a.owner,
                "facts": a.facts,
            }
            for a in answers
        ]

    # the claim side, keyed by claim id
    def claim_side(
        self, value: Any, key: Any, timestamp: int, headers: Any, state: Any
    ) -> list[tuple[str, str, bytes]]:
        stored = state.get("case")
        case = None if stored is None else ClaimCase(**stored)
        partition = message_context().partition
        if isinstance(value, dict):  # the invoice side's answer
            case, effects = claim_case.on_invoice_answer(
                case,
                value["invoice"],
                value["answer"],
                value["note"],
                value["owner"],
                value["facts"],
                self.policy,
                self.build,
                reversal,
            )
            if case is None:
                return []
        elif value[0] == CLAIM:
            raw = value[1]
            claim = self.decode_claim(raw)
            refs = list(
                dict.fromkeys(
                    invoice_ref(ref) for line in claim["lines"] for ref in line["invoice_refs"]
                )
            )
            case, effects, _ = claim_case.on_claim(
                case,
                claim["claim_id"],
                partition,
                timestamp,
                raw,
                claim,
                refs,
                self.policy,
                self.build,
            )
        else:
            approval = self.decode_approval(value[1])
            case, effects, _ = claim_case.on_approval(
                case, approval["claim_id"], partition, timestamp, approval, self.policy, self.build
            )
        state.set("case", case.__dict__)
        return [out for effect in effects for out in self._out(case, effect, timestamp)]

    def _out(self, case: ClaimCase, effect: Any, at_ms: int) -> list[tuple[str, str, bytes]]:
        """(branch, key, the value's bytes): encoded here, so that the four branches after the
        claim side copy bytes (Quix pickles a value once per extra branch)."""
        if isinstance(effect, Post):
            return [("postings", case.claim_id, bytes(self.encode_posting(effect.posting)))]
        if isinstance(effect, Status):
            return [
                (
                    "status",
                    case.claim_id,
                    bytes(
                        self.encode_status(
                            {
                                "claim_id": case.claim_id,
                                "claim_version": case.version,
                                "status": effect.status,
                                "reason": effect.reason,
                                "detail": effect.detail,
                                "invoice_refs": effect.invoice_refs,
                                "related_claim_id": effect.related_claim_id,
                                "occurred_at": datetime.datetime.fromtimestamp(
                                    at_ms / 1000, datetime.UTC
                                ),
                            }
                        )
                    ),
                )
            ]
        if isinstance(effect, Attach | Detach):
            kind = "UNCITE" if isinstance(effect, Detach) else "READY" if effect.ready else "CITE"
            return [
                (
                    "cite",
                    effect.invoice,
                    json_dumps(
                        {
                            "kind": kind,
                            "claim_id": case.claim_id,
                            "invoice": effect.invoice,
                            "submitted_ms": case.submitted_ms,
                        }
                    ),
                )
            ]
        if isinstance(effect, Reject):
            original = base64.b64encode(effect.original or b"").decode()
            return [
                (
                    "rejected",
                    case.claim_id,
                    json_dumps(
                        {
                            "claim_id": case.claim_id,
                            "reason": effect.reason,
                            "problems": effect.problems,
                            "original": original,
                        }
                    ),
                )
            ]
        return []  # budget requests: the bench's claims have no budget


def build(prefix: str, guarantee: str, state_dir: str, commit_interval: float) -> Application:
    settings = Settings(topic_prefix=prefix)
    job = Job(settings)
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=f"{prefix}-quix",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if guarantee == "exactly_once" else "at-least-once",
        state_dir=state_dir,
        use_changelog_topics=True,
        commit_interval=commit_interval,  # the same as the worker it is compared with
        consumer_poll_timeout=0.1,
        # keys land where kafka-python's producers put them (murmur2), as the inputs did; batches
        # as the worker's producer makes them
        producer_extra_config={
            "partitioner": "murmur2_random",
            "linger.ms": settings.streams_producer_linger_ms,
            "batch.size": settings.streams_producer_batch_bytes,
        },
        consumer_extra_config={"max.partition.fetch.bytes": settings.streams_fetch_partition_bytes},
        loglevel="WARNING",
    )
    internal = TopicConfig(num_partitions=settings.topic_partitions, replication_factor=1)

    def raw_input(role: str) -> Any:
        return app.topic(job.codecs.topic(role), key_deserializer="str", value_deserializer="bytes")

    def json_topic(name: str, encoded: bool = False) -> Any:
        """``encoded``: its values are claim-side outputs, JSON already."""
        return app.topic(
            f"{prefix}.quix.{name}",
            key_serializer="str",
            key_deserializer="str",
            value_serializer=Encoded() if encoded else "json",
            value_deserializer="json",
            config=internal,
        )

    cites, answers, rejected = (
        json_topic("invoice-refs", encoded=True),
        json_topic("claim-events"),
        json_topic("rejected", encoded=True),
    )
    postings, status = (
        app.topic(f"{prefix}.quix.{name}", key_serializer="str", value_serializer=Encoded(),
                  config=internal)  # Avro, encoded by the claim side
        for name in ("postings", "claim-status")
    )  # fmt: skip

    invoice_side = app.dataframe(raw_input("invoices_raw")).concat(app.dataframe(cites))
    invoice_side = invoice_side.apply(job.invoice_side, stateful=True, expand=True, metadata=True)
    invoice_side.to_topic(answers, key=lambda answer: answer["claim_id"])

    claims = app.dataframe(raw_input("claims_raw")).apply(lambda raw: (CLAIM, raw))
    approvals = app.dataframe(raw_input("approvals_raw")).apply(lambda raw: (APPROVAL, raw))
    claim_side = claims.concat(approvals).concat(app.dataframe(answers))
    claim_side = claim_side.apply(job.claim_side, stateful=True, expand=True, metadata=True)
    for name, topic in (
        ("postings", postings),
        ("status", status),
        ("cite", cites),
        ("rejected", rejected),
    ):
        branch = claim_side.filter(lambda out, name=name: out[0] == name)
        branch.to_topic(topic, key=lambda out: out[1])
    return app


def main() -> None:
    prefix, guarantee, state_dir, commit_interval = sys.argv[1:5]
    build(prefix, guarantee, state_dir, float(commit_interval)).run()


if __name__ == "__main__":
    main()
