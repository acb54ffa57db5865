"""The contracts in ``avro_schemas/<contract>/v<N>.avsc``: every version of every contract."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_DIR = Path(
    os.environ.get("ERPBRIDGE_SCHEMA_DIR", Path(__file__).resolve().parents[2] / "avro_schemas")
)
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


@dataclass(frozen=True)
class ContractVersion:
    contract: str
    version: int
    schema: dict[str, Any]
    path: Path

    @cached_property
    def text(self) -> str:
        """Canonical JSON text, as registered with a schema registry."""
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)

    @cached_property
    def parsed(self) -> Any:
        return parse_schema_text(self.text)

    @property
    def full_name(self) -> str:
        return f"{self.schema.get('namespace', '')}.{self.schema['name']}".lstrip(".")


@lru_cache(maxsize=256)
def parse_schema_text(text: str) -> Any:
    """A schema's JSON text, parsed by fastavro (cached: every codec parses through here)."""
    return fastavro.parse_schema(json.loads(text))


@dataclass(frozen=True)
class Contract:
    name: str
    versions: tuple[ContractVersion, ...]

    @property
    def latest(self) -> ContractVersion:
        return self.versions[-1]

    def version(self, number: int) -> ContractVersion:
        for version in self.versions:
            if version.version == number:
                return version
        raise KeyError(f"{self.name} has no version {number}")


class ContractError(ValueError):
    """A contract file is missing, unreadable or not valid Avro."""


def load_catalog(schema_dir: Path = SCHEMA_DIR) -> dict[str, Contract]:
    catalog: dict[str, Contract] = {}
    for folder in sorted(p for p in schema_dir.iterdir() if p.is_dir()):
        versions = []
        for path in folder.iterdir():
            match = _VERSION_FILE.match(path.name)
            if not match:
                continue
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
                fastavro.parse_schema(schema)
            except (ValueError, fastavro.schema.SchemaParseException) as exc:
                raise ContractError(f"{path.relative_to(schema_dir)}: {exc}") from exc
            versions.append(ContractVersion(folder.name, int(match.group(1)), schema, path))
        versions.sort(key=lambda v: v.version)
        numbers = [v.version for v in versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ContractError(
                f"{folder.name}: versions must be v1..vN without gaps, got {numbers}"
            )
        if versions:
            catalog[folder.name] = Contract(folder.name, tuple(versions))
    return catalog


@lru_cache(maxsize=1)
def catalog() -> dict[str, Contract]:
    return load_catalog()


def contract(name: str) -> Contract:
    try:
        return catalog()[name]
    except KeyError:
        raise ContractError(f"no contract {name!r} in {SCHEMA_DIR}") from None
