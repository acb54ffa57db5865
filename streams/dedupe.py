"""Which claim content we have already seen, so a duplicate passes once and a change is a version.

Duplicates come from webhook retries, polling overlaps, re-imported files and replayed dead
letters, and from two sources sending the same claim: the content hash ignores who sent it, when
and how (event id, source, submission time, provenance), so all of those count as one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

_NOT_CONTENT = {"event_id", "source_system", "submitted_at", "origin"}


def content_hash(claim: Mapping[str, Any]) -> str:
    content = {k: v for k, v in claim.items() if k not in _NOT_CONTENT}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Verdict(Enum):
    NEW = "new"  # first version: post it
    DUPLICATE = "duplicate"  # same content as the last version: drop it
    REVISION = "revision"  # new content, nothing posted yet: post it
    CHANGED_AFTER_POSTING = "changed_after_posting"  # new content, already posted: hold it


@dataclass(frozen=True)
class ClaimState:
    """What the claim-versions table keeps per claim id (JSON in the changelog)."""

    hash: str
    version: int
    posted: bool

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "version": self.version, "posted": self.posted}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> ClaimState | None:
        return None if not value else cls(str(value["hash"]), int(value["version"]),
                                          bool(value["posted"]))  # fmt: skip


def judge(previous: ClaimState | None, digest: str) -> tuple[Verdict, int]:
    """The verdict on a claim whose content hashes to ``digest``, and its version number."""
    if previous is None:
        return Verdict.NEW, 1
    if previous.hash == digest:
        return Verdict.DUPLICATE, previous.version
    if previous.posted:
        return Verdict.CHANGED_AFTER_POSTING, previous.version + 1
    return Verdict.REVISION, previous.version + 1
