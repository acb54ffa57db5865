"""Apache Kafka 4.x in KRaft mode, resolved from Maven Central and run on 127.0.0.1: one combined
broker and controller (``make up``), or one node of a cluster (:mod:`deploy.local.kafka_cluster`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.process import (
    PROJECT_ROOT,
    LaunchError,
    ManagedProcess,
    Service,
    port_open,
    state_dir,
)

POM = PROJECT_ROOT / "deploy" / "local" / "pom.xml"
BROKER = ManagedProcess("kafka")


@dataclass(frozen=True)
class KafkaConfig:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("ERPBRIDGE_KAFKA_PORT", "9092"))
    heap: str = os.environ.get("ERPBRIDGE_KAFKA_HEAP", "1g")
    node_id: int = 1
    # a cluster's controller quorum, (node id, controller port) each: a static quorum; empty: this
    # node alone is the quorum (formatted --standalone)
    voters: tuple[tuple[int, int], ...] = ()
    home_dir: Path | None = None  # default: <state>/kafka

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def home(self) -> Path:
        return self.home_dir or state_dir() / "kafka"

    @property
    def libs(self) -> Path:  # shared by every node
        return state_dir() / "kafka" / "libs"

    @property
    def replicas(self) -> int:
        """How many copies the internal topics keep: 3 in a cluster of 3 or more."""
        return min(3, max(1, len(self.voters)))

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"


def broker_answers(bootstrap: str, timeout_ms: int = 2000) -> bool:
    """True when a Kafka broker answers a metadata request at ``bootstrap``."""
    host, _, port = bootstrap.rpartition(":")
    if not port_open(host, int(port)):
        return False
    return metadata_answers(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout_ms,
        session_timeout_ms=timeout_ms - 500,
        heartbeat_interval_ms=(timeout_ms - 500) // 3,
        connections_max_idle_ms=timeout_ms + 5000,
    )


def metadata_answers(**options: Any) -> bool:
    """True when the brokers a kafka-python client with ``options`` reaches answer a metadata
    request."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(**options)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        consumer.topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        consumer.close()


def resolve_libs(cfg: KafkaConfig) -> Path:
    """Resolve kafka_2.13 and its runtime dependencies with Maven (cached in ~/.m2)."""
    marker = cfg.libs / ".resolved"
    if marker.exists() and marker.read_text() == POM.read_text():
        return cfg.libs
    if shutil.which("mvn") is None:
        raise LaunchError("mvn not found: install Maven and Java 17 to run the local Kafka broker")
    if cfg.libs.exists():
        shutil.rmtree(cfg.libs)
    cfg.libs.mkdir(parents=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={cfg.libs}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LaunchError(
            f"Maven could not resolve Kafka:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    marker.write_text(POM.read_text())
    return cfg.libs


def write_properties(cfg: KafkaConfig) -> None:
    cfg.properties.parent.mkdir(parents=True, exist_ok=True)
    if cfg.voters:
        quorum = "controller.quorum.voters=" + ",".join(
            f"{node}@{cfg.host}:{port}" for node, port in cfg.voters)  # fmt: skip
    else:
        quorum = f"controller.quorum.bootstrap.servers={cfg.host}:{cfg.controller_port}"
    copies, isr = cfg.replicas, min(2, cfg.replicas)
    cfg.properties.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={cfg.node_id}",
                quorum,
                f"listeners=PLAINTEXT://{cfg.host}:{cfg.port},CONTROLLER://{cfg.host}:{cfg.controller_port}",
                f"advertised.listeners=PLAINTEXT://{cfg.host}:{cfg.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={cfg.data}",
                "num.partitions=3",
                f"default.replication.factor={copies}",
                f"min.insync.replicas={isr}",
                f"offsets.topic.replication.factor={copies}",
                "offsets.topic.num.partitions=10",
                f"transaction.state.log.replication.factor={copies}",
                f"transaction.state.log.min.isr={isr}",
                "transaction.state.log.num.partitions=5",
                f"share.coordinator.state.topic.replication.factor={copies}",
                f"share.coordinator.state.topic.min.isr={isr}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "",
            ]
        )
    )


# The broker's logging, warnings and up from Kafka itself; the broker image takes it too.
LOG4J = Path(__file__).with_name("log4j2.properties")


def java_command(cfg: KafkaConfig, main: str, *args: str) -> list[str]:
    return [
        "java",
        f"-Xmx{cfg.heap}",
        f"-Xms{cfg.heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={LOG4J}",
        f"-Dkafka.logs.dir={cfg.home / 'logs'}",
        "-cp",
        f"{cfg.libs}/*",
        main,
        *args,
    ]


def format_storage(cfg: KafkaConfig, cluster_id: str | None = None) -> None:
    """Format the node's log dir once: alone as its own quorum, or (``cluster_id`` given, the
    same for every node) as a member of the static quorum in ``cfg.voters``."""
    if (cfg.data / "meta.properties").exists():
        return
    alone = [] if cfg.voters else ["--standalone"]
    result = subprocess.run(
        java_command(
            cfg,
            "kafka.tools.StorageTool",
            "format",
            *alone,
            # one argument: an id may start with "-" (URL-safe base64), which as a separate
            # argument the tool reads as an option ("--cluster-id/-t: expected one argument")
            f"--cluster-id={cluster_id or new_cluster_id()}",
            "-c",
            str(cfg.properties),
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LaunchError(f"kafka StorageTool format failed:\n{result.stdout}{result.stderr}")


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def service(cfg: KafkaConfig | None = None) -> Service:
    cfg = cfg or KafkaConfig()
    return Service(
        "kafka",
        BROKER,
        cfg.host,
        cfg.port,
        "ERPBRIDGE_KAFKA_PORT",
        cfg.bootstrap,
        answers=lambda: broker_answers(cfg.bootstrap),
        ready_timeout=90,
        stop_timeout=45,
    )


def up(cfg: KafkaConfig | None = None) -> str:
    """Start the broker unless one already answers; return a one-line status."""
    cfg = cfg or KafkaConfig()

    def prepare() -> list[str]:
        resolve_libs(cfg)
        write_properties(cfg)
        format_storage(cfg)
        return java_command(cfg, "kafka.Kafka", str(cfg.properties))

    return service(cfg).up(prepare)


def down() -> str:
    return service().down()


def status(cfg: KafkaConfig | None = None) -> str:
    return service(cfg).status()
