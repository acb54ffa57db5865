"""The landing folder: files dropped by an SFTP exchange or an export job, picked up once each.

A file is taken only once it is complete: a ``<name>.done`` marker beside it says so, or else it
has not changed for ``stable_s`` seconds. It is then imported (:func:`import_file`, whose ledger
makes a file imported before publish nothing again) and moved, by a rename in the same folder
tree, to ``done/`` or, when it could not be read as a whole, to ``failed/`` (its refusal is on the
rejection topic). Files whose names start with ``.`` (uploads in progress) are left alone.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from connectors.sources.batch_file import ImportReport, import_file
from connectors.sources.file_formats import FileFormatError
from erpbridge.config import Settings

log = logging.getLogger(__name__)
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".xml")


@dataclass
class PickupRun:
    """One pass over the landing folder: what was imported, refused, or left for later."""

    imported: list[ImportReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file -> why
    waiting: list[str] = field(default_factory=list)  # not complete yet

    def summary(self) -> str:
        published = sum(r.published for r in self.imported)
        already = sum(r.already_imported for r in self.imported)
        return (
            f"{len(self.imported)} file(s) imported ({published} published, {already} "
            f"already imported), {len(self.failed)} failed, {len(self.waiting)} waiting"
        )


def pick_up(settings: Settings, folder: Path, source_system: str, *, kind: str | None = None,
            stable_s: float = 5.0) -> PickupRun:  # fmt: skip
    run = PickupRun()
    done, failed = folder / "done", folder / "failed"
    done.mkdir(exist_ok=True)
    failed.mkdir(exist_ok=True)
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in SUFFIXES:
            continue
        marker = path.with_name(path.name + ".done")
        if not marker.exists() and time.time() - path.stat().st_mtime < stable_s:
            run.waiting.append(path.name)
            continue
        try:
            run.imported.append(import_file(path, settings, source_system, kind=kind,
                                            progress=False))  # fmt: skip
            target = done
        except FileFormatError as exc:
            run.failed[path.name] = str(exc)
            target = failed
        _move(path, target)
        marker.unlink(missing_ok=True)
    log.info("landing folder %s: %s", folder, run.summary())
    return run


def _move(path: Path, folder: Path) -> Path:
    """Rename into ``folder`` (atomic on one file system); a name taken there gets a time."""
    target = folder / path.name
    if target.exists():
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{path.stem}.{stamp}{path.suffix}"
    return path.rename(target)


def watch(settings: Settings, folder: Path, source_system: str, stop: threading.Event, *,
          kind: str | None = None, interval_s: float = 10.0,
          stable_s: float = 5.0) -> None:  # fmt: skip
    while not stop.is_set():
        pick_up(settings, folder, source_system, kind=kind, stable_s=stable_s)
        stop.wait(interval_s)
