"""Who may read and write what on Kafka: each component's grants, derived from the topic names
(:mod:`erpbridge.topics`) and settings, for a broker that authorizes (ACLs).

Each component logs in as its own principal (``kafka_sasl_username``) and gets only what it
does: a source writes the raw input topics and the failure topic but cannot write postings; a
sink reads postings and writes the ERP's answers but cannot write claims; the processors own
their group, their transactional ids and their tables' changelogs. ``erpbridge access plan``
prints the grants (``--json`` for tooling); the local secure broker applies them
(:mod:`deploy.local.kafka_secure`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from erpbridge.config import Settings
from erpbridge.topics import Topics

COMPONENTS = ("source", "streams", "sink", "registry", "operator")


@dataclass(frozen=True)
class Grant:
    """One component's rights. Topics and groups are literal names unless under ``*_prefixes``
    (prefixed resources); every topic read or written may also be described."""

    component: str
    principal: str
    read_topics: tuple[str, ...] = ()
    write_topics: tuple[str, ...] = ()
    topic_prefixes: tuple[str, ...] = ()  # every right (its tables' changelogs, its own log)
    read_topic_prefixes: tuple[str, ...] = ()
    write_topic_prefixes: tuple[str, ...] = ()
    group_prefixes: tuple[str, ...] = ()
    transactional_id_prefixes: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(settings: Settings, principals: dict[str, str] | None = None) -> list[Grant]:
    """Each component's grant; ``principals`` maps a component to its user name (default
    ``erpbridge-<component>``)."""
    names = {c: f"erpbridge-{c}" for c in COMPONENTS} | (principals or {})
    topics = Topics(settings.topic_prefix)
    app = settings.streams_app_id
    inputs = (topics.claims_raw, topics.approvals_raw, topics.invoices_raw)
    return [
        Grant("source", names["source"],
              read_topics=(topics.source_offsets,),
              write_topics=(*inputs, topics.rejected, topics.reference, topics.source_offsets),
              transactional_id_prefixes=(f"erpbridge-poll-{settings.topic_prefix}-",),
              notes=("writes what it validated, and what it refused to the failure topic",
                     "polling sources commit their cursor in a transaction")),
        Grant("streams", names["streams"],
              read_topics=(*inputs, topics.claim_events, topics.invoice_refs,
                           topics.budget_requests, topics.reference),
              write_topics=(topics.claim_events, topics.invoice_refs, topics.budget_requests,
                            topics.postings,
                            topics.rejected, topics.claim_status),
              topic_prefixes=(f"{app}-",),
              group_prefixes=(app,),
              transactional_id_prefixes=(f"{app}-",),
              notes=("its tables' changelogs and Faust's own topics start with the app id",)),
        Grant("sink", names["sink"],
              read_topics=(topics.postings, topics.erp_feedback),
              write_topics=(topics.erp_dead_letter, topics.erp_feedback,
                            topics.feedback_dead_letter),
              group_prefixes=(f"{settings.topic_prefix}-sink-",),
              notes=("the ERP sink and the feedback sender",)),
        Grant("registry", names["registry"],
              topic_prefixes=(settings.schema_registry_topic,),
              notes=("its log: one compacted partition",)),
        Grant("operator", names["operator"],
              read_topic_prefixes=(f"{settings.topic_prefix}.", f"{app}-"),
              write_topic_prefixes=(f"{settings.topic_prefix}.",),
              group_prefixes=(f"{settings.topic_prefix}-", app),
              transactional_id_prefixes=(f"{settings.topic_prefix}-dlq-replay-",),
              notes=("inspect, replay and reconcile: reads every topic, writes the project's "
                     "(replays go back to where a record came from, in transactions)",)),
    ]  # fmt: skip


def render(grants: list[Grant]) -> str:
    """The plan as a table an operator can read (and apply with their own tooling)."""
    lines = []
    for grant in grants:
        lines.append(f"{grant.component} (User:{grant.principal})")
        for label, values in (
            ("read", grant.read_topics), ("write", grant.write_topics),
            ("all rights, topics starting", grant.topic_prefixes),
            ("read, topics starting", grant.read_topic_prefixes),
            ("write, topics starting", grant.write_topic_prefixes),
            ("groups starting", grant.group_prefixes),
            ("transactional ids starting", grant.transactional_id_prefixes),
        ):  # fmt: skip
            if values:
                lines.append(f"  {label:<28} {', '.join(values)}")
        lines.extend(f"  - {note}" for note in grant.notes)
    return "\n".join(lines)


# (resource type, name, pattern type, operation): what a broker's ACLs must allow for a grant
Binding = tuple[str, str, str, str]


def bindings(grant: Grant) -> list[Binding]:
    """The ACL bindings (all ALLOW, any host) that give ``grant``'s principal its rights."""
    found: list[Binding] = []

    def add(kind: str, names: tuple[str, ...], pattern: str, *operations: str) -> None:
        found.extend((kind, name, pattern, op) for name in names for op in operations)

    add("TOPIC", grant.read_topics, "LITERAL", "READ", "DESCRIBE")
    add("TOPIC", grant.write_topics, "LITERAL", "WRITE", "DESCRIBE")
    add("TOPIC", grant.topic_prefixes, "PREFIXED", "ALL")
    add("TOPIC", grant.read_topic_prefixes, "PREFIXED", "READ", "DESCRIBE", "DESCRIBE_CONFIGS")
    add("TOPIC", grant.write_topic_prefixes, "PREFIXED", "WRITE", "DESCRIBE")
    add("GROUP", grant.group_prefixes, "PREFIXED", "READ", "DESCRIBE")
    add("TRANSACTIONAL_ID", grant.transactional_id_prefixes, "PREFIXED", "WRITE", "DESCRIBE")
    return sorted(set(found))
