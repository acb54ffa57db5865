"""``python -m deploy.local up|down|status|workers-up|workers-down|serve-tryton|postgres-up|
postgres-down|prometheus-up|prometheus-down|cluster-up [N]|cluster-down [N] [--wipe]|secure-up|
secure-down [--wipe]``."""

from __future__ import annotations

import sys

from deploy.local import (
    kafka,
    kafka_cluster,
    kafka_secure,
    postgres,
    prometheus,
    redis,
    registry,
    tryton,
    workers,
)
from deploy.local.process import LaunchError


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        if command == "up":
            lines = [kafka.up(), registry.up(), redis.up(), tryton.up()]
        elif command == "down":
            lines = [*workers.down(), tryton.down(), redis.down(), registry.down(), kafka.down(),
                     prometheus.down()]  # fmt: skip
        elif command == "status":
            lines = [
                kafka.status(), registry.status(), redis.status(), tryton.status(),
                *workers.status(),
            ]  # fmt: skip
        elif command == "workers-up":
            lines = workers.up()
        elif command == "workers-down":
            lines = workers.down()
        elif command == "postgres-up":  # the books' production engine, when wanted
            lines = [postgres.up(), f"ERPBRIDGE_BOOKS_URL={postgres.PostgresConfig().url}"]
        elif command == "postgres-down":
            lines = [postgres.down()]
        elif command == "prometheus-up":  # scraping the workers, with the alerting rules
            lines = [prometheus.up(), f"alerts: {prometheus.PrometheusConfig().url}/alerts"]
        elif command == "prometheus-down":
            lines = [prometheus.down()]
        elif command == "cluster-up":  # a replicated cluster, beside the single broker
            cluster = kafka_cluster.KafkaCluster(int(argv[1]) if len(argv) > 1 else 3)
            lines = [*cluster.up(), f"ERPBRIDGE_KAFKA_BOOTSTRAP={cluster.bootstrap}"]
        elif command == "cluster-down":
            cluster = kafka_cluster.KafkaCluster(int(argv[1]) if len(argv) > 1 else 3)
            lines = cluster.down(wipe="--wipe" in argv)
        elif command == "secure-up":  # SASL_SSL + ACLs, beside the plaintext broker
            lines = kafka_secure.SecureKafka().up()
        elif command == "secure-down":
            lines = kafka_secure.SecureKafka().down(wipe="--wipe" in argv)
        elif command == "serve-tryton":  # foreground, for containers
            tryton.serve_foreground()
            return 0
        else:
            print(
                f"unknown command {command!r}: up | down | status | workers-up | workers-down"
                " | serve-tryton | postgres-up | postgres-down | prometheus-up | prometheus-down"
                " | cluster-up [N] | cluster-down [N]"
                " [--wipe] | secure-up | secure-down [--wipe]",
                file=sys.stderr,
            )
            return 2
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
