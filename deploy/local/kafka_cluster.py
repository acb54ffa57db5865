"""A replicated Apache Kafka cluster on loopback ports: N nodes in combined mode (each a broker and
a controller of one static KRaft quorum), for what one broker cannot show: replication, a broker
lost under load, leaders moving.

Node ``i`` (from 1) listens on ``base_port + 2(i-1)`` and its controller on the port after it.
Internal topics keep 3 copies (fewer in a smaller cluster) and ``min.insync.replicas`` is 2, so
an ``acks=all`` write survives the loss of any one broker. Topics the project creates take their
replication factor and ``min.insync.replicas`` from its settings
(``ERPBRIDGE_TOPIC_REPLICATION_FACTOR``, ``ERPBRIDGE_TOPIC_MIN_INSYNC_REPLICAS``).

    python -m deploy.local cluster-up [BROKERS]   # default 3, from ERPBRIDGE_KAFKA_CLUSTER_PORT
    python -m deploy.local cluster-down
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka import (
    KafkaConfig,
    broker_answers,
    format_storage,
    java_command,
    new_cluster_id,
    resolve_libs,
    write_properties,
)
from deploy.local.process import LaunchError, ManagedProcess, port_open, state_dir, wait_until

DEFAULT_BASE_PORT = int(os.environ.get("ERPBRIDGE_KAFKA_CLUSTER_PORT", "19092"))


@dataclass(frozen=True)
class KafkaCluster:
    brokers: int = 3
    base_port: int = DEFAULT_BASE_PORT
    heap: str = os.environ.get("ERPBRIDGE_KAFKA_CLUSTER_HEAP", "512m")

    @property
    def home(self) -> Path:
        return state_dir() / f"kafka-cluster-{self.base_port}"

    def node(self, node_id: int) -> KafkaConfig:
        port = self.base_port + 2 * (node_id - 1)
        voters = tuple((n, self.base_port + 2 * (n - 1) + 1) for n in range(1, self.brokers + 1))
        return KafkaConfig(port=port, heap=self.heap, node_id=node_id, voters=voters,
                           home_dir=self.home / f"node-{node_id}")  # fmt: skip

    def process(self, node_id: int) -> ManagedProcess:
        return ManagedProcess(f"kafka-{self.base_port}-{node_id}")

    @property
    def bootstrap(self) -> str:
        return ",".join(self.node(n).bootstrap for n in range(1, self.brokers + 1))

    def up(self) -> list[str]:
        """Format (once, one cluster id for all) and start every node; wait for all to answer."""
        if self.brokers < 1:
            raise LaunchError("a cluster needs at least one broker")
        first = self.node(1)
        resolve_libs(first)
        id_file = self.home / "cluster.id"
        self.home.mkdir(parents=True, exist_ok=True)
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        cluster_id = id_file.read_text().strip()
        for node_id in range(1, self.brokers + 1):
            cfg = self.node(node_id)
            write_properties(cfg)
            format_storage(cfg, cluster_id)
        lines = [self.start(node_id, wait=False) for node_id in range(1, self.brokers + 1)]
        for node_id in range(1, self.brokers + 1):
            self.wait(node_id)
        return lines + [f"kafka cluster of {self.brokers}: up at {self.bootstrap}"]

    def start(self, node_id: int, wait: bool = True) -> str:
        cfg, proc = self.node(node_id), self.process(node_id)
        if proc.running():
            return f"kafka node {node_id}: already up at {cfg.bootstrap}"
        if port_open(cfg.host, cfg.port) or port_open(cfg.host, cfg.controller_port):
            raise LaunchError(f"kafka node {node_id}: port {cfg.port} or {cfg.controller_port} "
                              "is taken; set ERPBRIDGE_KAFKA_CLUSTER_PORT")  # fmt: skip
        started = proc.start(java_command(cfg, "kafka.Kafka", str(cfg.properties)))
        if wait:
            self.wait(node_id)
        return f"kafka node {node_id}: started at {cfg.bootstrap} (pid {started.pid})"

    def wait(self, node_id: int, timeout: float = 120.0) -> float:
        cfg, proc = self.node(node_id), self.process(node_id)
        return wait_until(lambda: broker_answers(cfg.bootstrap), timeout,
                          f"kafka node {node_id}", alive=proc.running,
                          log=proc.logfile)  # fmt: skip

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        import signal

        pid = self.process(node_id).pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)

    def down(self, wipe: bool = False) -> list[str]:
        lines = []
        for node_id in range(1, self.brokers + 1):
            # its data goes anyway when wiped: no controlled shutdown (a node whose quorum is
            # leaving waits for it up to the timeout)
            stopped = self.process(node_id).stop(timeout=0 if wipe else 45)
            lines.append(f"kafka node {node_id}: {'stopped' if stopped else 'not running'}")
        if wipe:
            shutil.rmtree(self.home, ignore_errors=True)
        return lines
