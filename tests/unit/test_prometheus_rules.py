"""The alerting and recording rules (deploy/prometheus/rules.yml) pass their promtool unit
tests (rules_test.yml: each alert fires on what should page, after its ``for``, and stays quiet
on healthy series), and every expression of the Grafana dashboards names metrics and recording
rules that exist. The expressions are also run against a real Prometheus in
tests/integration/test_sink_tryton.py (the breaker alert firing and resolving)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from erpbridge import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (make test installs it)")
    return found


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    done = subprocess.run([_promtool(), "test", "rules", "rules_test.yml"], cwd=RULES.parent,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_and_says_what_to_do() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "rules_test.yml").read_text()))
    assert {rule["alert"] for rule in alerts} <= tested
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _exposed() -> set[str]:
    """The series names our metrics expose (counters with _total, histograms' _bucket...)."""
    names = set()
    for collector in list(metrics.REGISTRY._collector_to_names):  # noqa: SLF001
        names |= set(metrics.REGISTRY._collector_to_names[collector])  # noqa: SLF001
    return names


def _expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((DEPLOY / "grafana").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            found += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    return found


def test_dashboards_only_read_series_that_exist() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    known = _exposed() | recorded | {"up", "ALERTS"}
    expressions = _expressions()
    assert len(expressions) >= 20
    for where, expr in expressions:
        for name in re.findall(r"\b((?:erpbridge)[:_][a-z0-9_:]+|up|ALERTS)\b", expr):
            assert name in known, f"{where}: {name} is neither a metric nor a recording rule"
    for group in groups:
        for rule in group["rules"]:
            for name in re.findall(r"\b(erpbridge_[a-z0-9_]+)\b", rule["expr"]):
                assert name in known, f"{rule.get('alert') or rule.get('record')}: {name}"


def test_the_shipped_and_the_local_prometheus_configs_are_valid(tmp_path: Path) -> None:
    from deploy.local.prometheus import PrometheusConfig, config_text

    shipped = subprocess.run([_promtool(), "check", "config", "prometheus.yml"],
                             cwd=RULES.parent, capture_output=True, text=True, timeout=60,
                             check=False)  # fmt: skip
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    local = tmp_path / "prometheus.yml"
    local.write_text(config_text(PrometheusConfig()))
    checked = subprocess.run([_promtool(), "check", "config", str(local)], capture_output=True,
                             text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "erpbridge-streams" in local.read_text() and "erpbridge-sink-tryton" in local.read_text()
