"""A named lock in Redis, so that two operators (or an operator and the auto-replay) never run
the same action on the same topic at once. Held with a token and a time-to-live that is renewed
while the holder works; released only by its holder."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"""


class Busy(RuntimeError):
    """Someone else holds the lock."""


@contextmanager
def held(redis_url: str, name: str, ttl_s: float = 30.0, wait_s: float = 0.0) -> Iterator[None]:
    """Hold ``name`` for the duration of the block (renewed every third of ``ttl_s``); raise
    :class:`Busy` when it stays taken for ``wait_s``."""
    client = redis.Redis.from_url(redis_url)
    token = uuid.uuid4().hex
    ttl_ms = int(ttl_s * 1000)
    stop = threading.Event()
    try:
        deadline_waits = max(int(wait_s / 0.1), 0)
        for attempt in range(deadline_waits + 1):
            if client.set(name, token, nx=True, px=ttl_ms):
                break
            if attempt == deadline_waits:
                raise Busy(f"{name} is held by another run; try again when it is done")
            stop.wait(0.1)

        def renew() -> None:
            while not stop.wait(ttl_s / 3):
                client.eval(_RENEW, 1, name, token, ttl_ms)

        renewer = threading.Thread(target=renew, daemon=True, name=f"lock-{name}")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            client.eval(_RELEASE, 1, name, token)
    finally:
        client.close()
