"""The peer: the claim/invoice correlation job written with Quix Streams, as a user might write
it instead of erpbridge's Faust processors. Run by ``bench.suite`` on the same broker and the
same input topics as the worker; not a product component.

    python -m bench.quix_peer PREFIX GUARANTEE STATE_DIR COMMIT_INTERVAL_S

What it does, as ours does:

- reads the same Avro inputs (claims, approvals, invoices) with the same decoder;
- invoice side, keyed by invoice number, state in RocksDB: checks each invoice (net + tax =
  total), answers every claim that cites it, now or when it arrives;
- claim side, keyed by claim id, state in RocksDB: keeps the claim, its approvals and the
  invoice answers, drops repeated events (same event id), asks the invoice side about each
  cited invoice, and when the final approval is APPROVE and every cited invoice is valid,
  publishes one Avro ``Posting`` (the contract's schema) and a status;
- exactly-once or at-least-once, through Quix's own transactions and changelogs.

What it leaves out (so it is a *lighter* job than ours): failure records for bad input, the
posting rules (accounts, input VAT from reference data, exchange rates), deadline ticks, audit,
and per-event metrics. Its internal messages are JSON where ours are Avro.
"""

from __future__ import annotations

import datetime
import sys
from decimal import Decimal
from typing import Any

from quixstreams import Application
from quixstreams.models.serializers import Deserializer, Serializer
from quixstreams.models.topics import TopicConfig

from erpbridge.config import Settings
from erpbridge.contracts.bindings import TopicCodecs


class AvroIn(Deserializer):  # type: ignore[misc]
    def __init__(self, codecs: TopicCodecs, role: str) -> None:
        super().__init__()
        self._decode = codecs.deserializer(role)
        self._role = role

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return {"role": self._role, **self._decode(value)}


class AvroOut(Serializer):  # type: ignore[misc]
    def __init__(self, codecs: TopicCodecs, role: str) -> None:
        super().__init__()
        self._encode = codecs.serializer(role)

    def __call__(self, value: Any, ctx: Any) -> bytes:
        return bytes(self._encode(value["value"]))


def on_invoice_side(value: dict[str, Any], state: Any) -> list[dict[str, Any]]:
    case = state.get("case") or {"valid": None, "waiting": []}
    if value["role"] == "invoices_raw":
        net, tax, total = (Decimal(str(value[k])) for k in ("amount_net", "tax_amount", "total"))
        case["valid"] = net + tax == total
        answers, case["waiting"] = case["waiting"], []
    elif case["valid"] is None:
        case["waiting"].append(value["claim_id"])
        answers = []
    else:
        answers = [value["claim_id"]]
    state.set("case", case)
    return [{"claim_id": claim_id, "invoice": value.get("invoice_number") or value["invoice"],
             "valid": case["valid"], "role": "answer"} for claim_id in answers]  # fmt: skip


def on_claim_side(value: dict[str, Any], state: Any) -> list[dict[str, Any]]:
    case = state.get("case") or {"seen": [], "claim": None, "approved": False, "answers": {},
                                 "posted": False}  # fmt: skip
    event_id = value.get("event_id")
    if event_id and event_id in case["seen"]:
        return []  # a repeated event
    if event_id:
        case["seen"].append(event_id)
    out: list[dict[str, Any]] = []
    role = value["role"]
    if role == "claims_raw":
        case["claim"] = _plain(value)
        refs = sorted({ref for line in value["lines"] for ref in line["invoice_refs"]})
        out += [{"to": "refs", "key": ref, "value": {"claim_id": value["claim_id"],
                                                     "invoice": ref}} for ref in refs]  # fmt: skip
        out.append({"to": "status", "key": value["claim_id"],
                    "value": _status(value["claim_id"], "RECEIVED")})  # fmt: skip
    elif role == "approvals_raw":
        if value["final"] and value["decision"] == "APPROVE":
            case["approved"] = True
    else:
        case["answers"][value["invoice"]] = value["valid"]
    claim = case["claim"]
    if claim and case["approved"] and not case["posted"]:
        refs = {ref for line in claim["lines"] for ref in line["invoice_refs"]}
        if all(case["answers"].get(ref) for ref in refs):
            case["posted"] = True
            out.append({"to": "postings", "key": claim["claim_id"], "value": _posting(claim)})
            out.append({"to": "status", "key": claim["claim_id"],
                        "value": _status(claim["claim_id"], "POSTED")})  # fmt: skip
    state.set("case", case)
    return out


def _plain(claim: dict[str, Any]) -> dict[str, Any]:
    """The claim as JSON-safe state (what Quix keeps in RocksDB)."""
    return {"claim_id": claim["claim_id"], "source_system": claim["source_system"],
            "employee": claim["employee"], "submitted": claim["submitted_at"].isoformat(),
            "lines": [{"category": line["category"], "description": line["description"],
                       "amount": str(line["amount"]), "currency": line["currency"],
                       "invoice_refs": list(line["invoice_refs"])}
                      for line in claim["lines"]]}  # fmt: skip


def _posting(claim: dict[str, Any]) -> dict[str, Any]:
    lines = [{"account_code": "6601", "description": f"{line['category']}: {line['description']}",
              "amount_minor": int(Decimal(line["amount"]) * 100),
              "original_amount": Decimal(line["amount"]), "original_currency": line["currency"],
              "exchange_rate": Decimal(1), "invoice_refs": line["invoice_refs"],
              "rate_date": None} for line in claim["lines"]]  # fmt: skip
    return {"posting_id": f"{claim['claim_id']}-v1", "claim_id": claim["claim_id"],
            "claim_version": 1, "source_system": claim["source_system"],
            "employee_id": claim["employee"]["id"], "employee_name": claim["employee"]["name"],
            "cost_centre": claim["employee"]["cost_centre"],
            "department": claim["employee"]["department"],
            "posting_date": datetime.date.fromisoformat(claim["submitted"][:10]),
            "currency": "CNY", "total_minor": sum(line["amount_minor"] for line in lines),
            "created_at": datetime.datetime.now(datetime.UTC), "lines": lines}  # fmt: skip


def _status(claim_id: str, state: str) -> dict[str, Any]:
    return {"claim_id": claim_id, "state": state}


def build(prefix: str, guarantee: str, state_dir: str, commit_interval: float) -> Application:
    settings = Settings(topic_prefix=prefix)
    codecs = TopicCodecs(settings)
    app = Application(
        broker_address=settings.kafka_bootstrap,
        consumer_group=f"{prefix}-quix",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if guarantee == "exactly_once" else "at-least-once",
        state_dir=state_dir,
        use_changelog_topics=True,
        commit_interval=commit_interval,  # the same as the worker it is compared with
        # keys land where kafka-python's producers put them (murmur2), as the inputs did
        producer_extra_config={"partitioner": "murmur2_random"},
    )
    internal = TopicConfig(num_partitions=settings.topic_partitions, replication_factor=1)

    def topic(role: str, **kwargs: Any) -> Any:
        return app.topic(codecs.topic(role), key_deserializer="str", key_serializer="str",
                         **kwargs)  # fmt: skip

    claims = topic("claims_raw", value_deserializer=AvroIn(codecs, "claims_raw"))
    approvals = topic("approvals_raw", value_deserializer=AvroIn(codecs, "approvals_raw"))
    invoices = topic("invoices_raw", value_deserializer=AvroIn(codecs, "invoices_raw"))
    refs = app.topic(f"{prefix}.quix.invoice-refs", key_serializer="str",
                     key_deserializer="str", value_serializer="json",
                     value_deserializer="json", config=internal)  # fmt: skip
    answers = app.topic(f"{prefix}.quix.claim-events", key_serializer="str",
                        key_deserializer="str", value_serializer="json",
                        value_deserializer="json", config=internal)  # fmt: skip
    postings = app.topic(f"{prefix}.quix.postings", key_serializer="str",
                         value_serializer=AvroOut(codecs, "postings"), config=internal)  # fmt: skip
    status = app.topic(f"{prefix}.quix.claim-status", key_serializer="str",
                       value_serializer="json", config=internal)  # fmt: skip

    invoice_side = app.dataframe(invoices).concat(
        app.dataframe(refs).apply(lambda value: {**value, "role": "cite"})
    )
    invoice_side = invoice_side.apply(on_invoice_side, stateful=True, expand=True)
    invoice_side.to_topic(answers, key=lambda value: value["claim_id"])

    claim_side = (app.dataframe(claims).concat(app.dataframe(approvals))
                  .concat(app.dataframe(answers)))  # fmt: skip
    claim_side = claim_side.apply(on_claim_side, stateful=True, expand=True)
    for target, topic_ in (("refs", refs), ("postings", postings)):
        branch = claim_side.filter(lambda item, target=target: item["to"] == target)
        if target == "refs":
            branch = branch.apply(lambda item: {**item["value"], "key": item["key"]})
            branch.to_topic(topic_, key=lambda value: value["key"])
        else:
            branch.to_topic(topic_, key=lambda item: item["key"])
    claim_side.filter(lambda item: item["to"] == "status").apply(
        lambda item: item["value"]
    ).to_topic(status, key=lambda value: value["claim_id"])
    return app


def main() -> None:
    prefix, guarantee, state_dir, commit_interval = sys.argv[1:5]
    build(prefix, guarantee, state_dir, float(commit_interval)).run()


if __name__ == "__main__":
    main()
