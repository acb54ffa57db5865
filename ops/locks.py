"""A named lock in Redis, so that two operators (or an operator and the auto-replay) never run
the same action on the same topic at once. Held with a token and a time-to-live that is renewed
while the holder works; released only by its holder.

A lock names its holder (``owner``: the action it runs, with host and pid). A resume of the same
action takes the lock over at once instead of waiting for a dead holder's time-to-live: it is
fenced, not waited for. What keeps an earlier holder that is still alive from doing harm is the
fencing of its writes (the replay's transactional producer: the resume's ``init_transactions``
fences it); its renewals find the lock no longer its own and stop.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

log = logging.getLogger(__name__)
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"""
_TAKE_OVER = """if redis.call('get', KEYS[1]) == ARGV[1] then
return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return false"""


class Busy(RuntimeError):
    """Someone else holds the lock."""


def _holder(value: bytes | None) -> dict[str, object]:
    try:
        found = json.loads(value or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


@contextmanager
def held(redis_url: str, name: str, ttl_s: float = 30.0, wait_s: float = 0.0,
         owner: str | None = None,
         take_over: bool = False) -> Iterator[None]:  # fmt: skip
    """Hold ``name`` for the duration of the block (renewed every third of ``ttl_s``); raise
    :class:`Busy` when it stays taken for ``wait_s``. With ``take_over``, a lock held for the
    same ``owner`` is taken at once."""
    client = redis.Redis.from_url(redis_url)
    token = json.dumps({"token": uuid.uuid4().hex, "owner": owner, "host": socket.gethostname(),
                        "pid": os.getpid()})  # fmt: skip
    ttl_ms = int(ttl_s * 1000)
    stop = threading.Event()
    try:
        waits = max(int(wait_s / 0.1), 0)
        for attempt in range(waits + 1):
            if client.set(name, token, nx=True, px=ttl_ms):
                break
            current: bytes | None = client.get(name)  # type: ignore[assignment]
            holder = _holder(current)
            mine = take_over and owner is not None and holder.get("owner") == owner
            if mine and client.eval(_TAKE_OVER, 1, name, current or b"", token, ttl_ms):
                log.warning("lock taken over lock=%s owner=%s from pid=%s host=%s", name, owner,
                            holder.get("pid"), holder.get("host"))  # fmt: skip
                break
            if attempt == waits:
                who = (f" (action {holder.get('owner')}, pid {holder.get('pid')} on "
                       f"{holder.get('host')})" if holder else "")  # fmt: skip
                raise Busy(f"{name} is held by another run{who}; try again when it is done")
            stop.wait(0.1)

        def renew() -> None:
            while not stop.wait(ttl_s / 3):
                if not client.eval(_RENEW, 1, name, token, ttl_ms):
                    return  # taken over (or expired): whoever holds it now decides

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
