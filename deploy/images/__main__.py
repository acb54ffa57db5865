"""``python -m deploy.images build [base|app|kafka ...] [--rebuild] [--json]``: build the images
(all three by default) and print each one's size and build time;
``python -m deploy.images env``: the environment the container engine runs with here;
``python -m deploy.images compose up|demo|down [--volumes]``: the compose stack
(:mod:`deploy.images.compose`);
``python -m deploy.images docker-api up|down``: podman's Docker API socket (testcontainers);
``python -m deploy.images kube check``: the Kubernetes manifests against the API schema."""

from __future__ import annotations

import json
import sys

from deploy.images import docker_api
from deploy.images.build import IMAGES, build
from deploy.images.compose import Stack
from deploy.images.engine import Engine, engine
from deploy.local.process import LaunchError


def main(argv: list[str]) -> int:
    command, *rest = argv or ["build"]
    if command == "kube":
        return _kube_check()
    try:
        found = engine()
        if command == "env":
            for name, value in found.env.items():
                print(f"{name}={value}")
            return 0
        if command == "compose":
            return _compose(found, rest)
        if command == "docker-api":
            print(docker_api.up(found) if rest[:1] != ["down"] else docker_api.down())
            return 0
        if command != "build":
            print("usage: python -m deploy.images build [base|app|kafka ...] [--rebuild] "
                  "[--json] | env", file=sys.stderr)  # fmt: skip
            return 2
        wanted = [name for name in rest if not name.startswith("--")] or list(IMAGES)
        unknown = [name for name in wanted if name not in IMAGES]
        if unknown:
            print(f"unknown image {unknown[0]!r}: one of {', '.join(IMAGES)}", file=sys.stderr)
            return 2
        built = []
        for name in wanted:
            done = build(found, name, rebuild="--rebuild" in rest)
            built.append(done)
            if "--json" not in rest:
                how = f"built in {done.seconds:.0f} s" if done.seconds else "already built"
                print(f"{done.image:40} {done.size_bytes / 1e6:7.0f} MB  {how}", flush=True)
        if "--json" in rest:
            print(json.dumps([vars(done) for done in built], indent=2))
        return 0
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _kube_check() -> int:
    from deploy.images.kube_schema import manifests, problems

    found = 0
    for name, doc in manifests():
        for problem in problems(doc):
            print(f"{name}: {problem}")
            found += 1
    print(f"{found} problem(s) in the Kubernetes manifests" if found else
          "the Kubernetes manifests fit the API schema")  # fmt: skip
    return 1 if found else 0


def _compose(found: Engine, rest: list[str]) -> int:
    action = rest[0] if rest else "up"
    stack = Stack(found)
    if action == "up":
        for service, seconds in stack.up().items():
            print(f"{service:16} healthy after {seconds:5.1f} s", flush=True)
        return 0
    if action == "demo":
        return stack.demo().returncode
    if action == "down":
        stack.down(volumes="--volumes" in rest)
        return 0
    print("usage: python -m deploy.images compose up|demo|down [--volumes]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
