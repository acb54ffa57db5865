import copy
import json
import shutil
from pathlib import Path
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from click.testing import CliRunner

from erpbridge.contracts.catalog import SCHEMA_DIR, load_catalog
from erpbridge.contracts.compatibility import Mode, check_evolution, incompatibilities
from erpbridge_cli.cli import main

CATALOG = load_catalog()


def test_every_contract_is_present_and_versioned() -> None:
    assert set(CATALOG) == {
        "expense_claim",
        "approval_decision",
        "invoice",
        "erp_posting",
        "erp_feedback",
        "claim_status",
        "claim_event",
        "invoice_citation",
        "budget_request",
        "audit_event",
        "reconciliation_summary",
    }
    assert [v.version for v in CATALOG["erp_feedback"].versions] == [1, 2, 3, 4]
    assert [v.version for v in CATALOG["erp_posting"].versions] == [1, 2, 3, 4, 5]
    assert [v.version for v in CATALOG["invoice"].versions] == [1, 2, 3]
    assert {v.schema["namespace"] for c in CATALOG.values() for v in c.versions} == {
        "io.erpbridge.events"
    }


def _walk(node: Any, path: str = ""):
    if isinstance(node, list):
        for branch in node:
            yield from _walk(branch, path)
    elif isinstance(node, dict):
        yield path, node
        for field in node.get("fields", []):
            yield f"{path}.{field['name']}", field
            yield from _walk(field["type"], f"{path}.{field['name']}")
        for key in ("items", "values"):
            if key in node:
                yield from _walk(node[key], path + "[]")


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_field_is_documented_and_money_is_never_float(name: str) -> None:
    for version in CATALOG[name].versions:
        for path, node in _walk(version.schema):
            if "name" in node and ("fields" in node or "type" in node and path.count(".")):
                assert node.get("doc"), f"{name} v{version.version}: {path} has no doc"
            assert node.get("type") not in ("float", "double"), f"{path} is a float"


# Pairs the independent checker (Apache Avro's) must agree with ours on.
REC = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}


def _rec(field_type: Any, name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": "a", "type": field_type}]}


def _enum(*symbols: str) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols)}


PAIRS = [
    (REC, REC),
    ({**REC, "fields": REC["fields"] + [{"name": "b", "type": "int"}]}, REC),
    ({**REC, "fields": REC["fields"] + [{"name": "b", "type": "int", "default": 0}]}, REC),
    (_rec("bytes"), REC),
    (_rec("int"), REC),
    (_rec(["null", "string"]), REC),
    (REC, _rec(["null", "string"])),
    (_rec("long"), _rec("int")),
    (_rec("int"), _rec("long")),
    (_enum("A", "B", "C"), _enum("A", "B")),
    (_enum("A"), _enum("A", "B")),
    ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}),
    ({"type": "map", "values": "int"}, {"type": "map", "values": "string"}),
    (_rec("string", name="S"), REC),
]


@pytest.mark.parametrize("reader, writer", PAIRS)
def test_our_checker_agrees_with_apache_avro(reader: dict, writer: dict) -> None:
    oracle = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    ours = incompatibilities(reader, writer)
    assert (not ours) == (oracle.compatibility is SchemaCompatibilityType.compatible), ours


@pytest.mark.parametrize("contract", sorted(CATALOG))
def test_every_contract_agrees_with_apache_avro_against_itself(contract: str) -> None:
    for version in CATALOG[contract].versions:
        assert incompatibilities(version.schema, version.schema) == []


def test_a_breaking_change_names_the_field() -> None:
    v1 = CATALOG["expense_claim"].latest.schema
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "approver", "type": "string", "doc": "x"})
    v2["fields"][6]["type"]["items"]["fields"][3]["type"]["scale"] = 2
    problems = check_evolution(v2, [v1], Mode.BACKWARD)
    assert (
        "new schema cannot read version 1: lines[].amount: decimal(18,4) changed to "
        "decimal(18,2)" in problems
    )
    assert any(
        p.startswith("new schema cannot read version 1: approver: field is missing")
        for p in problems
    )
    assert check_evolution(v2, [v1], Mode.NONE) == []


def test_modes_check_the_right_direction() -> None:
    fb = CATALOG["erp_feedback"]
    v1, v2 = fb.version(1).schema, fb.version(2).schema
    for mode in Mode:
        assert check_evolution(v2, [v1], mode) == []  # an optional field with a default
    removed = copy.deepcopy(v1)
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "erp"]
    assert check_evolution(removed, [v1], Mode.BACKWARD) == []  # readers ignore extra data
    assert check_evolution(removed, [v1], Mode.FORWARD)  # old readers need "erp"
    assert check_evolution(removed, [v1, v1], Mode.FULL_TRANSITIVE)


def test_schemas_check_fails_with_an_explanation(tmp_path: Path) -> None:
    shutil.copytree(SCHEMA_DIR, tmp_path / "avro_schemas")
    folder = tmp_path / "avro_schemas" / "approval_decision"
    v2 = json.loads((folder / "v1.avsc").read_text())
    v2["fields"][7]["type"]["symbols"].remove("RETURN")
    (folder / "v2.avsc").write_text(json.dumps(v2))
    result = CliRunner().invoke(main, ["schemas", "check", "--dir", str(tmp_path / "avro_schemas")])
    assert result.exit_code == 1
    assert "approval_decision v2: breaks compatibility" in result.output
    assert "decision: enum Decision cannot read symbol(s) RETURN and has no default symbol" in (
        result.output
    )
    ok = CliRunner().invoke(main, ["schemas", "check"])
    assert ok.exit_code == 0, ok.output
