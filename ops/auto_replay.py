"""Auto-replay (opt-in): dead letters of transient classes go back on a schedule, with back-off.

A posting or a feedback event that failed for good only because the other side stayed down (the
retry budget ran out: reason ``retries_exhausted``) is worth another try later. Every
``interval_s`` the worker replays such records whose back-off is over: ``base_s`` after their last
failure for a first replay, doubling with each replay they already had (their
``erpbridge.replay.count``), up to ``max_replays``, after which they go to quarantine. Each pass is
one replay action under the actor ``auto-replay`` (role operator), audited like a manual one;
its progress is its own consumer group, so a record is replayed once per failure.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from erpbridge.config import Settings
from ops.audit import Actor, Role
from ops.dlq import Failed, Selection
from ops.replay import REPLAY_COUNT, ReplayPlan, ReplayReport, replay

log = logging.getLogger(__name__)
ACTOR = Actor("auto-replay", Role.OPERATOR)
TRANSIENT_REASONS = ("retries_exhausted",)


class AutoReplaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_AUTO_REPLAY_", frozen=True,
                                      extra="ignore")  # fmt: skip

    interval_s: float = Field(300.0, gt=0)  # how often to look
    base_s: float = Field(600.0, ge=0)  # back-off before the first replay; doubles after
    max_replays: int = Field(3, ge=1)
    topics: tuple[str, ...] = ("erp_dead_letter", "feedback_dead_letter")
    rate: float | None = Field(None, gt=0)


def due(config: AutoReplaySettings, now: datetime.datetime) -> Callable[[Failed], bool]:
    def check(found: Failed) -> bool:
        count = int(dict(found.failure.headers).get(REPLAY_COUNT, b"0") or 0)
        wait = datetime.timedelta(seconds=config.base_s * 2**count)
        return found.failure.last_failed_at + wait <= now

    return check


def one_pass(settings: Settings, config: AutoReplaySettings,
             now: datetime.datetime | None = None) -> list[ReplayReport]:  # fmt: skip
    """Replay what is due on each configured failure topic; return what was done."""
    moment = now or datetime.datetime.now(datetime.UTC)
    reports = []
    for topic in config.topics:
        for reason in TRANSIENT_REASONS:
            plan = ReplayPlan(Selection(topic=topic, reason=reason),
                              action_id=f"auto-{topic}-{reason}", rate=config.rate,
                              max_replays=config.max_replays,
                              due=due(config, moment), audit_when_idle=False)  # fmt: skip
            reports.append(replay(settings, plan, ACTOR))
    return reports


def run(settings: Settings, config: AutoReplaySettings, stop: threading.Event) -> None:
    log.info("auto-replay started interval=%ss base=%ss max_replays=%d topics=%s",
             config.interval_s, config.base_s, config.max_replays, config.topics)  # fmt: skip
    while not stop.is_set():
        try:
            for report in one_pass(settings, config):
                if report.selected:
                    log.info("auto-replay action=%s %s", report.action_id, report.counts())
        except Exception:  # noqa: BLE001  a pass that failed is audited; the next one tries again
            log.exception("auto-replay pass failed")
        stop.wait(config.interval_s)
