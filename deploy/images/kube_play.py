"""The Kubernetes manifests (``deploy/k8s``) played with ``podman kube play``.

podman 4.3 plays Pods, Deployments, PersistentVolumeClaims and ConfigMaps, not StatefulSets,
Jobs, Services or PodDisruptionBudgets, and its Secret handling fails (a Secret played beside a
pod that reads it: "secret ... is not valid JSON"). So the manifests are rendered into what it
plays, doing what the controllers would:

- each StatefulSet replica becomes the Pod ``<name>-<ordinal>`` with its own claims
  (``<template>-<name>-<ordinal>``, as Kubernetes names them); each Deployment replica the Pod
  ``<name>-<n>``; a Job its Pod;
- a workload of one replica that a Service selects is named after the Service, which is how
  the other pods find it by name on the podman network (no Service objects there);
- ``envFrom``/``valueFrom`` of the ConfigMap and the Secret become literal variables in the
  rendering (a file in the state folder, never committed), and an optional Secret volume whose
  Secret is absent is left out, as the kubelet does;
- probes other than liveness are dropped (podman ignores readiness); container ports are
  dropped (podman 4.3 publishes every declared port on the host, so two replicas collide:
  "bind: address already in use"), except those ``host_ports`` publishes on 127.0.0.1.

What the rendering cannot show, a cluster would: scheduling, eviction under the budgets, rolling
updates by the controllers. The manifests themselves are checked against the API schema
(:mod:`deploy.images.kube_schema`).
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from deploy.images.engine import Engine
from deploy.images.kube_schema import manifests
from deploy.local.process import state_dir

NETWORK = "erpbridge-kube"
WORKLOADS = ("StatefulSet", "Deployment", "Job")


@dataclass
class Rendering:
    pods: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)  # PersistentVolumeClaims
    workload_of: dict[str, str] = field(default_factory=dict)  # pod name -> workload name
    env: dict[str, str] = field(default_factory=dict)  # the ConfigMap and Secret, merged

    def documents(self, pods: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Claims then pods (all, or only the named ones: a pod recreated keeps its claims)."""
        if pods is None:
            return [*self.claims, *self.pods]
        wanted = set(pods)
        return [pod for pod in self.pods if pod["metadata"]["name"] in wanted]


HostPorts = Mapping[str, Mapping[int, int]]  # workload -> container port -> host port


def render(objects: list[dict[str, Any]], host_ports: HostPorts | None = None,
           overrides: Mapping[str, Mapping[str, str]] | None = None) -> Rendering:  # fmt: skip
    """``host_ports``: the ports of a workload's first container published on 127.0.0.1;
    ``overrides``: workload name -> variables set over its containers' (the tests publish the
    broker to the host this way)."""
    host_ports, overrides = host_ports or {}, overrides or {}
    maps = {o["metadata"]["name"]: dict(o.get("data") or {})
            for o in objects if o["kind"] == "ConfigMap"}  # fmt: skip
    secrets = {o["metadata"]["name"]: _secret_values(o) for o in objects if o["kind"] == "Secret"}
    services = [o for o in objects if o["kind"] == "Service"]
    out = Rendering(env={k: v for values in [*maps.values(), *secrets.values()]
                         for k, v in values.items()})  # fmt: skip
    out.claims = [copy.deepcopy(o) for o in objects if o["kind"] == "PersistentVolumeClaim"]
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        name, spec = workload["metadata"]["name"], workload["spec"]
        labels = spec["template"].get("metadata", {}).get("labels", {})
        service = next((s for s in services if s["spec"].get("selector")
                        and _selects(s["spec"]["selector"], labels)), None)  # fmt: skip
        replicas = 1 if workload["kind"] == "Job" else int(spec.get("replicas", 1))
        for ordinal in range(replicas):
            pod_name = _pod_name(workload, service, replicas, ordinal)
            pod_spec = copy.deepcopy(spec["template"]["spec"])
            pod_spec.setdefault("restartPolicy", "Always")
            pod_spec.pop("terminationGracePeriodSeconds", None)  # podman takes it from `stop -t`
            volumes = []
            for template in spec.get("volumeClaimTemplates", []):
                claim = f"{template['metadata']['name']}-{name}-{ordinal}"  # Kubernetes' naming
                out.claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                   "metadata": {"name": claim},
                                   "spec": template["spec"]})  # fmt: skip
                volumes.append({"name": template["metadata"]["name"],
                                "persistentVolumeClaim": {"claimName": claim}})  # fmt: skip
            for volume in pod_spec.get("volumes", []):
                secret = volume.get("secret")
                if secret and secret.get("optional") and secret["secretName"] not in secrets:
                    continue  # absent and optional: not mounted
                volumes.append(volume)
            pod_spec["volumes"] = volumes
            mounted = {volume["name"] for volume in volumes}
            for container in pod_spec["containers"]:
                _literal_env(container, maps, secrets, overrides.get(name, {}))
                container["volumeMounts"] = [m for m in container.get("volumeMounts", [])
                                             if m["name"] in mounted]  # fmt: skip
                for probe in ("readinessProbe", "startupProbe"):
                    container.pop(probe, None)
            _publish(pod_spec["containers"][0], host_ports.get(name, {}))
            out.pods.append({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": pod_name, "labels": labels},
                             "spec": pod_spec})  # fmt: skip
            out.workload_of[pod_name] = name
    return out


def _pod_name(workload: dict[str, Any], service: dict[str, Any] | None, replicas: int,
              ordinal: int) -> str:  # fmt: skip
    """A single pod behind a (non-headless) Service takes its name, so others find it by it."""
    if service is not None and replicas == 1 and service["spec"].get("clusterIP") != "None":
        return str(service["metadata"]["name"])
    name = str(workload["metadata"]["name"])
    return name if workload["kind"] == "Job" else f"{name}-{ordinal}"


def _publish(container: dict[str, Any], ports: Mapping[int, int]) -> None:
    container["ports"] = [{"containerPort": inside, "hostPort": outside, "hostIP": "127.0.0.1"}
                          for inside, outside in ports.items()]  # fmt: skip


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _secret_values(secret: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


Values = Mapping[str, Mapping[str, str]]  # ConfigMap or Secret name -> its values


def _literal_env(container: dict[str, Any], maps: Values, secrets: Values,
                 over: Mapping[str, str]) -> None:  # fmt: skip
    env: dict[str, str] = {}
    for source in container.pop("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[item["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        else:
            env[item["name"]] = str(item.get("value", ""))
    env.update(over)
    container["env"] = [{"name": k, "value": v} for k, v in env.items()]


@dataclass(frozen=True)
class Stopped:
    seconds: float
    exit_code: int  # 137: killed at the end of the grace period
    log_tail: str


@dataclass(frozen=True)
class KubePlay:
    """The rendering played on the podman network ``NETWORK``."""

    engine: Engine
    rendering: Rendering

    def _play(self, documents: list[dict[str, Any]], label: str) -> None:
        path = state_dir() / "kube" / f"{label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        self.engine.run(["kube", "play", "--network", NETWORK, str(path)], timeout=600)

    def up(self) -> None:
        if self.engine.run(["network", "exists", NETWORK], check=False).returncode != 0:
            self.engine.run(["network", "create", NETWORK])
        self._play(self.rendering.documents(), "all")

    def delete_pod(self, pod: str, grace_s: int = 30) -> Stopped:
        """What `kubectl delete pod` does: SIGTERM, the grace period, then SIGKILL; how long
        its container took, how it ended and what it logged last.

        The kubelet stops a pod's containers first and its sandbox (the network) after them.
        ``podman pod stop`` (4.3) stops the infra container alongside the others: the network
        went within 0.5 s of the SIGTERM (measured), and a worker that must still commit or
        abort its transaction then waits out its grace. So the container is stopped alone,
        then the pod removed."""
        container = self.container(pod)
        started = time.monotonic()
        self.engine.run(["stop", "-t", str(grace_s), container], timeout=grace_s + 30)
        took = time.monotonic() - started
        state = self.engine.run(["inspect", "--format", "{{.State.ExitCode}}", container])
        logs = self.engine.run(["logs", "--tail", "60", container], check=False)
        self.engine.run(["pod", "rm", "-f", pod], timeout=60)
        return Stopped(took, int(state.stdout.strip() or -1), logs.stdout + logs.stderr)

    def recreate(self, pod: str) -> None:
        """What its controller does next: the same pod again, on the same claims."""
        self._play(self.rendering.documents([pod]), pod)

    def container(self, pod: str) -> str:
        """The first container of ``pod`` (podman names it <pod>-<container>)."""
        spec = next(p for p in self.rendering.pods if p["metadata"]["name"] == pod)["spec"]
        return f"{pod}-{spec['containers'][0]['name']}"

    def restarts(self, pod: str) -> int:
        """How often its container was started again after exiting (restartPolicy Always)."""
        out = self.engine.run(["inspect", "--format", "{{.RestartCount}}", self.container(pod)],
                              check=False)  # fmt: skip
        return int(out.stdout.strip() or 0)

    def logs(self, pod: str, lines: int = 80) -> str:
        out = self.engine.run(["logs", "--tail", str(lines), self.container(pod)], check=False)
        return f"--- {pod} ---\n{out.stdout}{out.stderr}"

    def down(self) -> None:
        """Remove every pod, the workers before the services they use (a worker whose broker
        went first spends its grace trying to reach it), then the claims."""
        for pod in reversed(self.rendering.pods):
            name = pod["metadata"]["name"]
            for container in pod["spec"]["containers"]:  # before the network: see delete_pod
                self.engine.run(["stop", "-t", "30", f"{name}-{container['name']}"],
                                check=False, timeout=90)  # fmt: skip
            self.engine.run(["pod", "rm", "-f", name], check=False, timeout=120)
        for claim in self.rendering.claims:
            self.engine.run(["volume", "rm", "-f", claim["metadata"]["name"]], check=False)


def play(engine: Engine, host_ports: HostPorts | None = None,
         overrides: Mapping[str, Mapping[str, str]] | None = None) -> KubePlay:  # fmt: skip
    objects = [doc for _, doc in manifests()]
    return KubePlay(engine, render(objects, host_ports, overrides))
