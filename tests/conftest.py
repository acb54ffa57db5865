"""Session fixtures for the real services.

Broker choice: ``KAFKA_BOOTSTRAP`` if set, else testcontainers when a Docker engine answers
(``DOCKER_HOST``: podman's Docker API from ``python -m deploy.images docker-api up`` does), else
the project's local launcher (Kafka from Maven). The header of the run says which. On
testcontainers the broker image is ``ERPBRIDGE_TEST_KAFKA_IMAGE``: by default the one `make image`
built here when it is there, else Docker Hub's apache/kafka (configured the same way). Redis and
Tryton come from the launcher.
A service these fixtures started is stopped at the end; one that was already up is reused.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.erp.tryton import TrytonSettings
from deploy.local import kafka as local_kafka
from deploy.local import redis as local_redis
from deploy.local import tryton as local_tryton
from deploy.local.kafka_cluster import KafkaCluster
from deploy.local.kafka_secure import SecureKafka
from deploy.local.process import free_port, free_ports

pytest_plugins = [
    "tests.integration.webhook_server",
    "tests.integration.ops_server",
]  # their fixtures


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # no SDK, no socket, no engine: all mean "use the local launcher"
        return False


def _broker_path() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return "KAFKA_BOOTSTRAP"
    return "testcontainers" if _docker_engine_answers() else "local launcher"


def _test_kafka_image() -> str:
    if os.environ.get("ERPBRIDGE_TEST_KAFKA_IMAGE"):
        return os.environ["ERPBRIDGE_TEST_KAFKA_IMAGE"]
    import docker

    from deploy.images.build import KAFKA, KAFKA_VERSION

    try:
        docker.from_env(timeout=5).images.get(KAFKA)
        return KAFKA
    except docker.errors.ImageNotFound:
        return f"docker.io/apache/kafka:{KAFKA_VERSION}"


def _broker_line() -> str:
    path = _broker_path()
    if path == "KAFKA_BOOTSTRAP":
        return f"broker: KAFKA_BOOTSTRAP ({os.environ['KAFKA_BOOTSTRAP']})"
    if path == "testcontainers":
        engine = os.environ.get("DOCKER_HOST", "the Docker socket")
        return f"broker: testcontainers ({_test_kafka_image()} on {engine})"
    return "broker: local launcher (Kafka from Maven on 127.0.0.1)"


def pytest_report_header() -> str:
    return _broker_line()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The broker path again at the end, where `make test` (pytest -q, no header) shows it."""
    terminalreporter.write_line(_broker_line())


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    path = _broker_path()
    if path == "KAFKA_BOOTSTRAP":
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    if path == "testcontainers":
        with _kafka_container(_test_kafka_image()) as bootstrap:
            yield bootstrap
        return
    cfg = local_kafka.KafkaConfig()
    started = not local_kafka.broker_answers(cfg.bootstrap)
    print(local_kafka.up(cfg))
    yield cfg.bootstrap
    if started:
        local_kafka.down()


@contextmanager
def _kafka_container(image: str) -> Iterator[str]:
    """One KRaft broker in a container, advertised on a host port chosen before it starts (the
    broker must name the port clients reach it on)."""
    from testcontainers.core.container import DockerContainer

    from deploy.images.compose import service_environment

    port = free_port()
    env = {  # the compose file's broker, reached from the host on ``port``
        **service_environment("kafka"),
        "KAFKA_LISTENERS": "INSIDE://:9092,CONTROLLER://:9093,HOST://:9094",
        "KAFKA_ADVERTISED_LISTENERS": f"INSIDE://localhost:9092,HOST://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "INSIDE:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "HOST:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INSIDE",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
    }
    container = DockerContainer(image).with_bind_ports(9094, port)
    for key, value in env.items():
        container = container.with_env(key, value)
    bootstrap = f"127.0.0.1:{port}"
    with container:
        deadline = time.monotonic() + 120
        while not local_kafka.broker_answers(bootstrap):
            assert time.monotonic() < deadline, (
                "the Kafka container did not answer in 120 s:\n"
                + (container.get_logs()[0].decode(errors="replace")[-3000:])
            )
            time.sleep(1)
        print(f"kafka: testcontainers, {image} at {bootstrap}")
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    cfg = local_redis.RedisConfig()
    started = not local_redis.redis_answers(cfg)
    print(local_redis.up(cfg))
    yield cfg.url
    if started:
        local_redis.down()


@dataclass(frozen=True)
class Erp:
    url: str
    database: str
    user: str
    password: str
    config: local_tryton.TrytonConfig

    @property
    def settings(self) -> TrytonSettings:
        """The Tryton writer's settings section for this server."""
        return TrytonSettings(url=self.url, database=self.database, user=self.user,
                              password=SecretStr(self.password))  # fmt: skip

    def stop(self) -> None:
        """Stop the server (an ERP outage); its database stays."""
        print(local_tryton.down(self.config))

    def start(self) -> None:
        print(local_tryton.up(self.config))


@pytest.fixture(scope="session")
def erp() -> Iterator[Erp]:
    """A Tryton server of our own on a free port, serving a fresh copy of the template database."""
    tag = uuid.uuid4().hex[:8]
    cfg = local_tryton.TrytonConfig(
        port=free_port(), database=f"test_{tag}", name=f"tryton-test-{tag}"
    )
    print(local_tryton.up(cfg, fresh=True))
    try:
        yield Erp(cfg.url, cfg.database, cfg.user, cfg.password, cfg)
    finally:
        local_tryton.down(cfg)
        for path in cfg.db_dir.glob(f"{cfg.database}.*"):
            path.unlink()
        cfg.conf.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def schema_registry_url(kafka_bootstrap: str) -> Iterator[str]:
    """An embedded registry of our own on a free port, on a topic of its own."""
    from deploy.local import registry as local_registry

    tag = uuid.uuid4().hex[:8]
    cfg = local_registry.RegistryConfig(
        port=free_port(), name=f"schema-registry-test-{tag}",
        env=(("ERPBRIDGE_KAFKA_BOOTSTRAP", kafka_bootstrap),
             ("ERPBRIDGE_SCHEMA_REGISTRY_TOPIC", f"_schemas_test_{tag}")),
    )  # fmt: skip
    print(local_registry.up(cfg))
    try:
        yield cfg.url
    finally:
        local_registry.down(cfg)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL cluster of our own (Debian's packages) on a free port; each test
    makes the databases it needs on it (:func:`fresh_database`)."""
    import shutil
    import tempfile
    from pathlib import Path

    from deploy.local import postgres as local_postgres
    from deploy.local.process import ManagedProcess

    home = Path(tempfile.mkdtemp(prefix="erpbridge-pg-"))
    home.chmod(0o755)  # as root the cluster runs as the postgres user, who must reach its data
    cfg = local_postgres.PostgresConfig(port=free_port(), data=home / "data")
    service = local_postgres.service(cfg, ManagedProcess(f"postgres-test-{cfg.port}"))
    print(service.up(lambda: local_postgres.server_argv(cfg)))
    try:
        yield cfg.url
    finally:
        print(service.down())
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(url: str) -> str:
    """A new, empty database on the cluster at ``url``; its URL."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def _free_base() -> int:
    """A port with the five after it free too (three brokers, three controllers)."""
    return free_ports(6)


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[SecureKafka]:
    """A broker of our own that authenticates (SASL_SSL, SCRAM-SHA-512, a CA made for it) and
    authorizes (ACLs), on free loopback ports; wiped at the end."""
    broker = SecureKafka(port=_free_base())
    print("\n".join(broker.up()))
    try:
        yield broker
    finally:
        broker.down(wipe=True)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A 3-broker KRaft cluster of our own on free loopback ports, wiped at the end."""
    cluster = KafkaCluster(3, base_port=_free_base())
    print("\n".join(cluster.up()))
    try:
        yield cluster
    finally:
        cluster.down(wipe=True)
