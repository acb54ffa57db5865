"""The Kubernetes manifests (``deploy/k8s``) checked against the Kubernetes API schema, with no
cluster: each object is walked against the OpenAPI types of the official Python client (its
models are generated from the API's OpenAPI spec): an unknown field, a value of the wrong type
or a required field left out is a problem. ``python -m deploy.images kube check``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from deploy.local.process import PROJECT_ROOT

MANIFESTS = PROJECT_ROOT / "deploy" / "k8s"
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "object": (object,), "datetime": (str, datetime.datetime), "date": (str, datetime.date),
}  # fmt: skip


def manifests(folder: Path = MANIFESTS) -> list[tuple[str, dict[str, Any]]]:
    """Every object of the kustomization's resources, in order: (file, object)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if doc:
                found.append((name, doc))
    return found


def model_of(doc: dict[str, Any]) -> str:
    """The client's model for an object: apps/v1 StatefulSet -> V1StatefulSet."""
    version = str(doc.get("apiVersion", "")).rsplit("/", 1)[-1]
    return f"{version[:1].upper()}{version[1:]}{doc.get('kind', '')}"


def problems(doc: dict[str, Any]) -> list[str]:
    """What is wrong with one object, each with its path; empty when it fits the schema."""
    from kubernetes import client

    name = model_of(doc)
    if not hasattr(client.models, name):
        return [f"{doc.get('apiVersion')}/{doc.get('kind')}: not a Kubernetes API kind"]
    found = _walk(doc, name, doc.get("kind", ""))
    if not found:
        try:  # the models' own checks: required fields, enumerations
            client.ApiClient()._ApiClient__deserialize(doc, name)  # noqa: SLF001
        except (ValueError, TypeError) as exc:
            found.append(f"{doc.get('kind')}: {exc}")
    return found


def _walk(value: Any, type_name: str, path: str) -> list[str]:
    from kubernetes import client

    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: a list expected, found {type(value).__name__}"]
        inner = type_name[5:-1]
        return [p for i, item in enumerate(value) for p in _walk(item, inner, f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: a map expected, found {type(value).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [p for k, item in value.items() for p in _walk(item, inner, f"{path}.{k}")]
    if type_name in PRIMITIVES:
        wanted = PRIMITIVES[type_name]
        if value is None or not isinstance(value, wanted) or (
                type_name == "int" and isinstance(value, bool)):  # fmt: skip
            return [f"{path}: {type_name} expected, found {value!r}"]
        return []
    model = getattr(client.models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: an object ({type_name}) expected, found {value!r}"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    found = []
    for key, item in value.items():
        if key not in by_json:
            found.append(f"{path}.{key}: no such field in {type_name}")
            continue
        found.extend(_walk(item, model.openapi_types[by_json[key]], f"{path}.{key}"))
    return found
