"""Encrypted, authenticated and authorized Kafka (issue 19), on a broker of our own with a
SASL_SSL listener (SCRAM-SHA-512, a CA the launcher made), mutual TLS between brokers, and ACLs
that deny whatever :mod:`erpbridge.access` does not grant.

Shown here: each component writes its own topics and is refused the others' (a source cannot
write postings, a sink cannot write claims); a wrong password, a client that does not trust the
broker's CA and a client certificate from another CA are refused; and the whole pipeline (the
registry, the streams worker, the Tryton sink, each as its own principal) books a claim
over SASL_SSL without a password in any log.
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from deploy.local import registry as local_registry
from deploy.local.kafka_secure import SecureKafka
from deploy.local.process import ManagedProcess, free_port
from deploy.local.tls import Authority
from erpbridge.config import Settings
from erpbridge.kafka_io import durable_producer, ensure_topics
from erpbridge.kafka_security import client_options
from erpbridge.topics import Topics
from tests.contract_samples import SAMPLES
from tests.integration.pipeline import (
    SAMPLE_REFERENCE,
    pipeline_workers,
    posted_in_tryton,
    publish,
    wait_for,
)

pytestmark = pytest.mark.integration


def _settings(broker: SecureKafka, user: str, prefix: str, **more: Any) -> Settings:
    fields = broker.client_settings(user, topic_prefix=prefix, streams_app_id=f"{prefix}-streams")
    return Settings(**{**fields, **more})


@pytest.fixture
def granted(secure_kafka: SecureKafka) -> str:
    """A topic prefix whose topics exist (made by admin) with every component's ACLs."""
    prefix = f"s{uuid.uuid4().hex[:8]}"
    admin = _settings(secure_kafka, "admin", prefix)
    ensure_topics(admin)
    secure_kafka.grant(admin)
    return prefix


def _write(settings: Settings, topic: str) -> str:
    producer = durable_producer(settings, max_block_ms=10_000)
    try:
        producer.send(topic, b"{}", key=b"k").get(timeout=20)
        return "written"
    except TopicAuthorizationFailedError:
        return "refused"
    finally:
        producer.close()


def test_each_component_writes_its_own_topics_and_is_refused_the_others(
    secure_kafka: SecureKafka, granted: str
) -> None:
    topics = Topics(granted)
    source = _settings(secure_kafka, "erpbridge-source", granted)
    sink = _settings(secure_kafka, "erpbridge-sink", granted)
    streams = _settings(secure_kafka, "erpbridge-streams", granted)
    outcomes = {
        ("source", "claims"): _write(source, topics.claims_raw),
        ("source", "rejected"): _write(source, topics.rejected),
        ("source", "postings"): _write(source, topics.postings),
        ("sink", "feedback"): _write(sink, topics.erp_feedback),
        ("sink", "claims"): _write(sink, topics.claims_raw),
        ("sink", "postings"): _write(sink, topics.postings),
        ("streams", "postings"): _write(streams, topics.postings),
        ("streams", "claims"): _write(streams, topics.claims_raw),
    }
    assert outcomes == {
        ("source", "claims"): "written", ("source", "rejected"): "written",
        ("source", "postings"): "refused",
        ("sink", "feedback"): "written", ("sink", "claims"): "refused",
        ("sink", "postings"): "refused",
        ("streams", "postings"): "written", ("streams", "claims"): "refused",
    }  # fmt: skip


class _Causes(logging.Handler):
    """What kafka-python logged while a connection failed (it raises only a timeout)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _connects(**options: Any) -> str:
    """ "connected" when an admin client with these options lists topics, else "refused: " and
    the cause kafka-python logged."""
    causes, logger = _Causes(), logging.getLogger("kafka")
    logger.addHandler(causes)
    level, logger.level = logger.level, logging.DEBUG
    try:
        admin = KafkaAdminClient(request_timeout_ms=5000, bootstrap_timeout_ms=5000, **options)
        try:
            admin.list_topics()
            return "connected"
        finally:
            admin.close()
    except (KafkaError, OSError) as exc:
        found = [m for m in causes.messages if re.search(r"(?i)authenticat|certificate|ssl", m)]
        return f"refused: {type(exc).__name__}: {found[-1] if found else 'no cause logged'}"
    finally:
        logger.removeHandler(causes)
        logger.level = level


def test_a_wrong_password_or_an_untrusted_certificate_is_refused(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    right = client_options(_settings(secure_kafka, "erpbridge-operator", "x"))
    assert _connects(**right) == "connected"
    wrong = client_options(_settings(secure_kafka, "erpbridge-operator", "x",
                                           kafka_sasl_password="not-the-password"))  # fmt: skip
    assert _connects(**wrong).startswith("refused")
    # a client that trusts another CA does not accept the broker's certificate
    rogue = Authority(tmp_path / "rogue")
    untrusting = client_options(_settings(secure_kafka, "erpbridge-operator", "x",
                                                kafka_ssl_cafile=str(rogue.cert_path)))  # fmt: skip
    assert _connects(**untrusting).startswith("refused")
    # on the brokers' mutual-TLS listener, a client certificate from another CA is refused and
    # one from the cluster's CA is let in
    mtls = {"bootstrap_servers": f"127.0.0.1:{secure_kafka.mtls_port}",
            "security_protocol": "SSL", "ssl_cafile": str(secure_kafka.ca_file)}  # fmt: skip
    stranger = rogue.issue("erpbridge-operator", server=False)
    assert _connects(**mtls, ssl_certfile=str(stranger.cert),
                     ssl_keyfile=str(stranger.key)).startswith("refused")  # fmt: skip
    member = secure_kafka.authority.issue("erpbridge-operator", server=False)
    assert _connects(**mtls, ssl_certfile=str(member.cert), ssl_keyfile=str(member.key)) == (
        "connected"
    )


def test_the_pipeline_books_a_claim_over_sasl_ssl_each_component_its_own_principal(
    secure_kafka: SecureKafka, granted: str, redis_url: str, erp: Any, tmp_path: Path
) -> None:
    from connectors.sources.reference_file import publish_reference

    log_topic = f"_erpbridge_schemas.{granted}"
    registry_settings = _settings(secure_kafka, "erpbridge-registry", granted,
                                  schema_registry_topic=log_topic)  # fmt: skip
    secure_kafka.grant(registry_settings)  # its log's name
    cfg = local_registry.RegistryConfig(port=free_port(), name=f"schema-registry-{granted}",
                                        env=tuple(registry_settings.to_env().items()))  # fmt: skip
    print(local_registry.up(cfg))
    common = {"schema_registry_url": cfg.url, "redis_url": redis_url,
              "streams_datadir": str(tmp_path / "faust"),
              "archive_dir": str(tmp_path / "archive")}  # fmt: skip
    source = _settings(secure_kafka, "erpbridge-source", granted, **common)
    for path in sorted(SAMPLE_REFERENCE.glob("*.csv")):
        publish_reference(path, source)
    streams = pipeline_workers(_settings(secure_kafka, "erpbridge-streams", granted, **common),
                               tmp_path / "workers", sink=False)  # fmt: skip
    sink = pipeline_workers(_settings(secure_kafka, "erpbridge-sink", granted, **common),
                            tmp_path / "workers", streams=False, erp=erp.settings)  # fmt: skip
    workers = [*streams, *sink]
    claim_id = f"SEC-{granted}"
    claim = dict(SAMPLES["expense_claim"], claim_id=claim_id, event_id=f"c-{claim_id}",
                 submitted_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
    claim["lines"] = [dict(line, invoice_refs=[]) for line in claim["lines"]]
    approval = dict(SAMPLES["approval_decision"], claim_id=claim_id, final=True,
                    event_id=f"a-{claim_id}")  # fmt: skip
    try:
        for worker in workers:
            worker.start()
        publish(source, "claims_raw", [(claim_id.encode(), claim)])
        publish(source, "approvals_raw", [(claim_id.encode(), approval)])
        booked = wait_for(lambda: posted_in_tryton(erp.settings, [claim_id]), 180,
                          "the claim to be booked over SASL_SSL", workers)  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
        local_registry.down(cfg)
    assert [inv["reference"] for inv in booked] == [claim_id]
    passwords = secure_kafka.passwords().values()
    logs = [w.log for w in workers] + [ManagedProcess(cfg.name).logfile]
    leaked = [str(log.name) for log in logs if log.exists()
              for password in passwords if password in log.read_text(errors="replace")]  # fmt: skip
    assert leaked == []
    assert all(password not in repr(source) for password in passwords)
