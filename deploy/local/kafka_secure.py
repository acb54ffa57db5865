"""A Kafka broker that authenticates, encrypts and authorizes, on loopback: what a production
cluster offers, so the project's clients are tested against it (issue 19).

- Clients connect to a ``SASL_SSL`` listener: TLS with a certificate from a private CA the
  launcher generates (:mod:`deploy.local.tls`), and SCRAM-SHA-512 logins.
- The node's own links (to its controller, and between brokers) use mutual TLS on listeners of
  their own: the broker is the principal its certificate names, a super user.
- The ``StandardAuthorizer`` denies whatever no ACL allows. ``admin`` is a super user; each
  component (``erpbridge-source``, ``-streams``, ``-sink``, ``-registry``, ``-operator``) has its
  own SCRAM user, and ``grant`` gives it the ACLs of :mod:`erpbridge.access`.

Passwords are generated once, kept in ``credentials.json`` (mode 0600) beside the broker's
state, and never printed.

    python -m deploy.local secure-up     # from ERPBRIDGE_KAFKA_SECURE_PORT (default 19392)
    python -m deploy.local secure-down [--wipe]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.local.kafka import KafkaConfig, java_command, new_cluster_id, resolve_libs
from deploy.local.process import LaunchError, ManagedProcess, port_open, state_dir, wait_until
from deploy.local.tls import Authority, Issued

DEFAULT_PORT = int(os.environ.get("ERPBRIDGE_KAFKA_SECURE_PORT", "19392"))
MECHANISM = "SCRAM-SHA-512"
BROKER_NAME = "kafka-broker"  # the CN of the broker's certificate, and its principal
USERS = ("admin", "erpbridge-source", "erpbridge-streams", "erpbridge-sink",
         "erpbridge-registry", "erpbridge-operator")  # fmt: skip


@dataclass(frozen=True)
class SecureKafka:
    port: int = DEFAULT_PORT  # SASL_SSL for clients; the controller on +1, brokers' link on +2
    heap: str = os.environ.get("ERPBRIDGE_KAFKA_SECURE_HEAP", "512m")
    host: str = "127.0.0.1"

    @property
    def home(self) -> Path:
        return state_dir() / f"kafka-secure-{self.port}"

    @property
    def config(self) -> KafkaConfig:
        return KafkaConfig(port=self.port, heap=self.heap, home_dir=self.home)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mtls_port(self) -> int:
        """The broker-to-broker listener: mutual TLS, a client certificate required."""
        return self.port + 2

    @property
    def authority(self) -> Authority:
        return Authority(self.home / "tls")

    @property
    def ca_file(self) -> Path:
        return self.authority.cert_path

    def broker_certificate(self) -> Issued:
        return self.authority.issue(BROKER_NAME, server=True)

    def process(self) -> ManagedProcess:
        return ManagedProcess(f"kafka-secure-{self.port}")

    # -- credentials ---------------------------------------------------------------------------
    @property
    def _credentials_file(self) -> Path:
        return self.home / "credentials.json"

    def passwords(self) -> dict[str, str]:
        """Every user's password, generated on first use (kept 0600, never printed)."""
        if not self._credentials_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            found = {user: secrets.token_urlsafe(24) for user in USERS}
            self._credentials_file.write_text(json.dumps(found))
            os.chmod(self._credentials_file, 0o600)
        return dict(json.loads(self._credentials_file.read_text()))

    def client_settings(self, user: str, **more: Any) -> dict[str, Any]:
        """The :class:`erpbridge.config.Settings` fields of a client logging in as ``user``."""
        return {
            "kafka_bootstrap": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": self.passwords()[user],
            "kafka_ssl_cafile": str(self.ca_file),
            **more,
        }

    # -- the broker ----------------------------------------------------------------------------
    def _write_properties(self) -> None:
        cfg, chain = self.config, self.broker_certificate().chain
        controller = cfg.controller_port
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={self.host}:{controller}",
            f"listeners=SASL_SSL://{self.host}:{self.port},CONTROLLER://{self.host}:"
            f"{controller},BROKER://{self.host}:{self.mtls_port}",
            f"advertised.listeners=SASL_SSL://{self.host}:{self.port},"
            f"BROKER://{self.host}:{self.mtls_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=BROKER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL,BROKER:SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={chain}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_file}",
            "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
            "listener.name.controller.ssl.client.auth=required",
            "listener.name.broker.ssl.client.auth=required",
            # a certificate's principal is its CN ("CN=kafka-broker,O=..." -> User:kafka-broker)
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:admin;User:{BROKER_NAME}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={cfg.data}",
            "num.partitions=3",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=5",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=3",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]
        cfg.properties.parent.mkdir(parents=True, exist_ok=True)
        cfg.properties.write_text("\n".join(lines))
        os.chmod(cfg.properties, 0o600)

    def _format(self) -> None:
        cfg = self.config
        if (cfg.data / "meta.properties").exists():
            return
        scram = []
        for user, password in self.passwords().items():
            scram += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        result = subprocess.run(
            java_command(cfg, "kafka.tools.StorageTool", "format", "--standalone",
                         f"--cluster-id={new_cluster_id()}",  # it may start with "-"
                         "-c", str(cfg.properties), *scram),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:  # the output names no password: StorageTool does not echo
            raise LaunchError(f"kafka StorageTool format failed:\n{result.stdout}{result.stderr}")

    def answers(self) -> bool:
        """True when the broker answers an authenticated metadata request as ``admin``."""
        if not port_open(self.host, self.port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        from erpbridge.config import Settings
        from erpbridge.kafka_security import client_options

        try:
            admin = KafkaAdminClient(**client_options(Settings(
                **self.client_settings("admin"))), request_timeout_ms=3000)  # fmt: skip
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def up(self) -> list[str]:
        proc = self.process()
        if proc.running():
            return [f"secure kafka: already up at {self.bootstrap}"]
        ports = (self.port, self.config.controller_port, self.mtls_port)
        if any(port_open(self.host, port) for port in ports):
            raise LaunchError(f"secure kafka: a port of {ports} is taken; set "
                              "ERPBRIDGE_KAFKA_SECURE_PORT")  # fmt: skip
        resolve_libs(self.config)
        self._write_properties()
        self._format()
        started = proc.start(java_command(self.config, "kafka.Kafka", str(self.config.properties)))
        seconds = wait_until(self.answers, 120.0, "secure kafka", alive=proc.running,
                             log=proc.logfile)  # fmt: skip
        return [f"secure kafka: started at {self.bootstrap} (SASL_SSL, {MECHANISM}, ACLs) in "
                f"{seconds:.1f}s (pid {started.pid}); CA {self.ca_file}"]  # fmt: skip

    def down(self, wipe: bool = False) -> list[str]:
        stopped = self.process().stop(timeout=0 if wipe else 45)  # wiped: no need to be kind
        if wipe:
            shutil.rmtree(self.home, ignore_errors=True)
        return [f"secure kafka: {'stopped' if stopped else 'not running'}"]

    # -- authorization ---------------------------------------------------------------------------
    def grant(self, settings: Any) -> int:
        """Create the ACLs of :func:`erpbridge.access.plan` for ``settings`` (its topic prefix
        and app id) as ``admin``; return how many bindings were asked for."""
        from kafka import KafkaAdminClient
        from kafka.admin import (
            ACL,
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourcePatternFilter,
            ResourceType,
        )

        from erpbridge.access import bindings, plan
        from erpbridge.config import Settings
        from erpbridge.kafka_security import client_options

        acls = [
            ACL(f"User:{grant.principal}", "*", ACLOperation[operation],
                ACLPermissionType.ALLOW, ResourcePattern(ResourceType[kind], name,
                                                         ACLResourcePatternType[pattern]))
            for grant in plan(settings)
            for kind, name, pattern, operation in bindings(grant)
        ]  # fmt: skip
        admin = KafkaAdminClient(**client_options(Settings(**self.client_settings("admin"))))
        try:
            result = admin.create_acls(acls)
            if result.get("failed"):
                raise LaunchError(f"secure kafka: ACLs refused: {result['failed'][:3]}")
            wanted = {str(acl) for acl in acls}
            everything = ACLFilter(None, "*", ACLOperation.ANY, ACLPermissionType.ANY,
                                   ResourcePatternFilter(ResourceType.ANY, None,
                                                         ACLResourcePatternType.ANY))  # fmt: skip
            # the broker's authorizer applies them from the metadata log, a moment later
            wait_until(lambda: wanted <= {str(a) for a in admin.describe_acls(everything)[0]},
                       30.0, "the ACLs to take effect")  # fmt: skip
        finally:
            admin.close()
        return len(acls)
