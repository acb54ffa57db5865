"""The Kubernetes manifests (deploy/k8s) against the Kubernetes API schema, and the rules a
deploy relies on: nothing secret in a ConfigMap, every long-running container probed and
bounded, the streams workers a StatefulSet with their own volumes under a disruption budget,
every worker's grace period the 30 s it is proven to stop in."""

from __future__ import annotations

import copy
import re
from typing import Any

from deploy.images.kube_schema import manifests, problems

OBJECTS = manifests()
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|_KEY$")


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in OBJECTS if doc["kind"] == kind}


def test_every_object_fits_the_kubernetes_api_schema() -> None:
    found = {f"{name}: {doc['kind']}/{doc['metadata']['name']}": problems(doc)
             for name, doc in OBJECTS}  # fmt: skip
    assert {k: v for k, v in found.items() if v} == {}
    assert len(OBJECTS) >= 20


def test_the_schema_check_catches_a_misspelt_field_a_wrong_type_and_a_missing_one() -> None:
    streams = copy.deepcopy(by_kind("StatefulSet")["streams"])
    container = streams["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    streams["spec"]["replicas"] = "2"
    assert problems(streams) == [
        "StatefulSet.spec.replicas: int expected, found '2'",
        "StatefulSet.spec.template.spec.containers[0].readinesProbe: no such field in V1Container",
    ]
    del streams["spec"]["selector"]
    streams["spec"]["replicas"] = 2
    container["readinessProbe"] = container.pop("readinesProbe")
    assert problems(streams) == ["StatefulSet: Invalid value for `selector`, must not be `None`"]


def test_no_secret_is_in_a_config_map_and_the_secrets_are_in_the_secret() -> None:
    config = by_kind("ConfigMap")["erpbridge-config"]["data"]
    assert [key for key in config if SECRET_NAME.search(key)] == []
    secret = by_kind("Secret")["erpbridge-secrets"]["stringData"]
    assert {"ERPBRIDGE_ERP_PASSWORD", "ERPBRIDGE_KAFKA_SASL_PASSWORD",
            "ERPBRIDGE_OPS_TOKENS", "ERPBRIDGE_WEBHOOK_SECRETS"} <= set(secret)  # fmt: skip
    for kind in ("StatefulSet", "Deployment", "Job"):
        for name, workload in by_kind(kind).items():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                literal = [e["name"] for e in container.get("env", [])
                           if SECRET_NAME.search(e["name"]) and "value" in e]  # fmt: skip
                assert literal == [], f"{name}: secrets given as literal values: {literal}"


def test_the_workers_are_probed_bounded_and_stopped_within_their_grace() -> None:
    workloads = {**by_kind("StatefulSet"), **by_kind("Deployment")}
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container or name == "books", name
            assert {"requests", "limits"} <= set(container.get("resources", {})), name
            assert "memory" in container["resources"]["limits"], name
        if container["image"].startswith("localhost/erpbridge:"):
            assert pod.get("terminationGracePeriodSeconds", 30) == 30, name
            assert pod["securityContext"]["runAsNonRoot"] is True, name


def test_the_streams_workers_keep_their_names_and_tables_under_a_disruption_budget() -> None:
    streams = by_kind("StatefulSet")["streams"]
    assert streams["spec"]["serviceName"] == "streams"
    assert [t["metadata"]["name"] for t in streams["spec"]["volumeClaimTemplates"]] == ["state"]
    container = streams["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "state", "mountPath": "/data"} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = by_kind("ConfigMap")["erpbridge-config"]["data"]
    assert config["ERPBRIDGE_STREAMS_DATADIR"].startswith("/data/")
    assert "ERPBRIDGE_STREAMS_STANDBY_REPLICAS" in config
    budget = by_kind("PodDisruptionBudget")["streams"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == streams["spec"]["selector"]
