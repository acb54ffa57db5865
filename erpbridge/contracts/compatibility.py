"""Can data written with one Avro schema be read with another? Each "no" names the field and why.

Follows the Avro specification's schema resolution rules; compatibility modes follow the
Confluent Schema Registry's (BACKWARD: the new schema reads data written with the previous one).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "error", "enum", "fixed"}


class Mode(enum.StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class Incompatibility:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


class _Names:
    """Named types of one schema, by full name, so references can be followed."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                full = _full_name(node, namespace)
                self.types[full] = node
                namespace = full.rpartition(".")[0]
                for field in node.get("fields", []):
                    self._collect(field["type"], namespace)
            elif kind == "array":
                self._collect(node["items"], namespace)
            elif kind == "map":
                self._collect(node["values"], namespace)
            elif isinstance(kind, dict | list):
                self._collect(kind, namespace)

    def resolve(self, node: Any, namespace: str) -> tuple[Any, str]:
        """Follow a name reference; unwrap ``{"type": {...}}``. Returns (node, its namespace)."""
        while True:
            if isinstance(node, str) and node not in _PRIMITIVES:
                full = node if "." in node else f"{namespace}.{node}".lstrip(".")
                node = self.types.get(full, self.types.get(node, node))
                continue
            if isinstance(node, dict) and isinstance(node.get("type"), dict | list):
                node = node["type"]
                continue
            if isinstance(node, dict) and node.get("type") in _NAMED:
                return node, _full_name(node, namespace).rpartition(".")[0]
            return node, namespace


def _full_name(node: dict[str, Any], namespace: str) -> str:
    name = str(node["name"])
    if "." in name:
        return name
    return f"{node.get('namespace', namespace)}.{name}".lstrip(".")


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        kind = node["type"]
        return "record" if kind == "error" else str(kind)
    return str(node)


def _describe(node: Any) -> str:
    if isinstance(node, dict) and node.get("logicalType"):
        return f"{node['type']} ({node['logicalType']})"
    if isinstance(node, dict) and node.get("type") in _NAMED:
        return f"{node['type']} {node['name']}"
    return _kind(node)


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names, self.writer_names = _Names(reader), _Names(writer)
        self.reader, self.writer = reader, writer
        self._assumed: set[tuple[str, str]] = set()  # recursive records assumed compatible

    def run(self) -> list[Incompatibility]:
        return self.check(self.reader, "", self.writer, "", "")

    def check(self, r: Any, rns: str, w: Any, wns: str, path: str) -> list[Incompatibility]:
        r, rns = self.reader_names.resolve(r, rns)
        w, wns = self.writer_names.resolve(w, wns)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            problems = []
            for branch in w:
                found = self.check(r, rns, branch, wns, path)
                if found:
                    bad = self.writer_names.resolve(branch, wns)[0]
                    problems.append(
                        Incompatibility(
                            path,
                            f"the writer's union branch {_describe(bad)} cannot be read "
                            f"({'; '.join(p.message for p in found)})",
                        )
                    )
            return problems
        if rk == "union":
            if any(not self.check(branch, rns, w, wns, path) for branch in r):
                return []
            return [
                Incompatibility(
                    path,
                    f"writer type {_describe(w)} matches no branch of the "
                    f"reader's union [{', '.join(map(_kind, r))}]",
                )
            ]
        if rk != wk:
            if rk in _PROMOTIONS.get(wk, set()):
                return []
            return [
                Incompatibility(
                    path, f"writer type {_describe(w)} cannot be read as {_describe(r)}"
                )
            ]
        if rk in _PRIMITIVES:
            return self._logical(r, w, path)
        if rk == "record":
            return self._record(r, rns, w, wns, path)
        if rk == "enum":
            return self._enum(r, w, path)
        if rk == "array":
            return self.check(r["items"], rns, w["items"], wns, f"{path}[]")
        if rk == "map":
            return self.check(r["values"], rns, w["values"], wns, f"{path}{{}}")
        if rk == "fixed":
            problems = self._names_match(r, rns, w, wns, path)
            if r["size"] != w["size"]:
                problems.append(Incompatibility(path, f"fixed size {w['size']} -> {r['size']}"))
            return problems + self._logical(r, w, path)
        return [Incompatibility(path, f"unsupported type {rk}")]

    @staticmethod
    def _logical(r: Any, w: Any, path: str) -> list[Incompatibility]:
        """Avro resolution ignores logical types; money and time must not silently change."""
        rl = r.get("logicalType") if isinstance(r, dict) else None
        wl = w.get("logicalType") if isinstance(w, dict) else None
        if rl != wl:
            return [Incompatibility(path, f"logical type {wl or 'none'} changed to {rl or 'none'}")]
        if rl == "decimal" and (r.get("precision"), r.get("scale", 0)) != (
            w.get("precision"),
            w.get("scale", 0),
        ):
            return [
                Incompatibility(
                    path,
                    f"decimal({w.get('precision')},{w.get('scale', 0)}) "
                    f"changed to decimal({r.get('precision')},"
                    f"{r.get('scale', 0)})",
                )
            ]
        return []

    def _names_match(self, r: Any, rns: str, w: Any, wns: str, path: str) -> list[Incompatibility]:
        rname, wname = _full_name(r, rns), _full_name(w, wns)
        aliases = {a if "." in a else f"{rns}.{a}".lstrip(".") for a in r.get("aliases", [])}
        if rname.rpartition(".")[2] == wname.rpartition(".")[2] or wname in aliases:
            return []
        return [Incompatibility(path, f"{r['type']} name {wname} changed to {rname}")]

    def _record(self, r: Any, rns: str, w: Any, wns: str, path: str) -> list[Incompatibility]:
        problems = self._names_match(r, rns, w, wns, path)
        key = (_full_name(r, rns), _full_name(w, wns))
        if key in self._assumed:
            return problems
        self._assumed.add(key)
        writer_fields = {f["name"]: f for f in w.get("fields", [])}
        for field in r.get("fields", []):
            where = f"{path}.{field['name']}".lstrip(".")
            source = next(
                (
                    writer_fields[n]
                    for n in [field["name"], *field.get("aliases", [])]
                    if n in writer_fields
                ),
                None,
            )
            if source is not None:
                problems += self.check(field["type"], rns, source["type"], wns, where)
            elif "default" not in field:
                problems.append(
                    Incompatibility(
                        where,
                        "field is missing in the writer's schema and has no default in the "
                        'reader\'s: add a default (e.g. null with a ["null", ...] union)',
                    )
                )
        return problems

    @staticmethod
    def _enum(r: Any, w: Any, path: str) -> list[Incompatibility]:
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            return [
                Incompatibility(
                    path,
                    f"enum {r['name']} cannot read symbol(s) "
                    f"{', '.join(missing)} and has no default symbol",
                )
            ]
        return []


def incompatibilities(reader: Any, writer: Any) -> list[Incompatibility]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can)."""
    return _Checker(reader, writer).run()


def check_evolution(new: Any, previous: Sequence[Any], mode: Mode) -> list[str]:
    """Problems of registering ``new`` after ``previous`` (oldest first) under ``mode``."""
    if mode is Mode.NONE or not previous:
        return []
    against = previous if mode.value.endswith("_TRANSITIVE") else previous[-1:]
    problems: list[str] = []
    for index, old in enumerate(against, start=len(previous) - len(against) + 1):
        if mode.value.startswith(("BACKWARD", "FULL")):
            problems += [
                f"new schema cannot read version {index}: {p}" for p in incompatibilities(new, old)
            ]
        if mode.value.startswith(("FORWARD", "FULL")):
            problems += [
                f"version {index} cannot read the new schema: {p}"
                for p in incompatibilities(old, new)
            ]
    return problems
