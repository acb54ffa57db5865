"""``erpbridge schemas check``: every contract version is compatible with the ones before it."""

from __future__ import annotations

from dataclasses import dataclass

from erpbridge.contracts.catalog import Contract
from erpbridge.contracts.compatibility import Mode, check_evolution


@dataclass(frozen=True)
class VersionReport:
    contract: str
    version: int
    problems: list[str]


def check_catalog(contracts: dict[str, Contract], mode: Mode) -> list[VersionReport]:
    reports = []
    for contract in contracts.values():
        for index, version in enumerate(contract.versions):
            previous = [v.schema for v in contract.versions[:index]]
            reports.append(
                VersionReport(
                    contract.name, version.version, check_evolution(version.schema, previous, mode)
                )
            )
    return reports
