"""The local stack for benches: Kafka, the schema registry, Redis, and a Tryton of the bench's
own (a fresh copy of the template database on a free port), removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def tryton_stack() -> Iterator[Any]:
    """Start what a bench needs; yield the Tryton config (url, database, user, password)."""
    from deploy.local import kafka, redis, registry
    from deploy.local import tryton as local_tryton
    from deploy.local.process import free_port

    for line in (kafka.up(), registry.up(), redis.up()):
        print(line)
    tag = uuid.uuid4().hex[:8]
    cfg = local_tryton.TrytonConfig(port=free_port(), database=f"bench_{tag}",
                                    name=f"tryton-bench-{tag}")  # fmt: skip
    print(local_tryton.up(cfg, fresh=True))
    try:
        yield cfg
    finally:
        print(local_tryton.down(cfg))
        for path in cfg.db_dir.glob(f"{cfg.database}.sqlite*"):
            path.unlink()
        cfg.conf.unlink(missing_ok=True)
