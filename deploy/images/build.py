"""``make image``: the project's images from Debian's packages, with no container registry.

1. ``localhost/erpbridge-base:bookworm``: a Debian bookworm root file system made by mmdebstrap
   from Debian's archive, imported as an image.
2. ``localhost/erpbridge:<version>``: the workers, CLI and demo ERP (the project's Dockerfile,
   with the base above as ``BASE_IMAGE``).
3. ``localhost/erpbridge-kafka:<kafka version>``: the broker, from the Maven artifacts of
   ``deploy/local/pom.xml`` on Debian's OpenJDK (``deploy/images/kafka/Containerfile``).
4. ``localhost/erpbridge-redis:bookworm``: Debian's redis-server (``deploy/images/redis/``).

Images are built in Docker's format, which keeps their HEALTHCHECK (the OCI format drops it).
:func:`write_env` writes the compose variables that name them.

Builds run with the host's network (apt and PyPI), and, where the host's CA bundle is what makes
PyPI's TLS verify, with that bundle mounted for pip at build time only.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import erpbridge
from deploy.images.engine import Engine
from deploy.local.kafka import LOG4J, POM, KafkaConfig, resolve_libs
from deploy.local.process import PROJECT_ROOT, LaunchError, state_dir

SUITE = "bookworm"
BASE = f"localhost/erpbridge-base:{SUITE}"
APP = f"localhost/erpbridge:{erpbridge.__version__}"
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
KAFKA = f"localhost/erpbridge-kafka:{KAFKA_VERSION}"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
REDIS = f"localhost/erpbridge-redis:{SUITE}"
IMAGES = {"base": BASE, "app": APP, "kafka": KAFKA, "redis": REDIS}


@dataclass(frozen=True)
class Built:
    name: str
    image: str
    seconds: float  # 0 when it was already there
    size_bytes: int


# What each image is built from, below the project's root: an image whose label
# SOURCE_LABEL differs from these files' digest is built again (the base: on --rebuild only).
_APP_SOURCES = "Dockerfile pyproject.toml README.md erpbridge erpbridge_cli streams connectors"
SOURCES = {
    "app": (*_APP_SOURCES.split(), "deploy", "ops", "books", "avro_schemas", "samples"),
    "kafka": ("deploy/images/kafka", "deploy/local/pom.xml", "deploy/local/log4j2.properties"),
    "redis": ("deploy/images/redis",),
}
SOURCE_LABEL = "org.erpbridge.source"
_NOT_SOURCE = ("__pycache__", ".egg-info", ".pyc")


def source_digest(which: str) -> str:
    """A digest of the files image ``which`` is built from (paths and contents)."""
    digest = hashlib.sha256()
    for top in SOURCES.get(which, ()):
        root = PROJECT_ROOT / top
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and not any(part in str(path) for part in _NOT_SOURCE):
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(engine: Engine, which: str, rebuild: bool = False) -> Built:
    """Build image ``which`` unless it is there and built from the same files."""
    image = IMAGES[which]
    source = source_digest(which) if which in SOURCES else None
    current = engine.has_image(image) and (
        source is None or engine.image_label(image, SOURCE_LABEL) == source)  # fmt: skip
    if current and not rebuild:
        return Built(which, image, 0.0, engine.image_size(image))
    if which != "base":
        build(engine, "base")
    start = time.monotonic()
    labels = ["--label", f"{SOURCE_LABEL}={source}"] if source else []
    {"base": _base, "app": _app, "kafka": _kafka, "redis": _redis}[which](engine, labels)
    return Built(which, image, time.monotonic() - start, engine.image_size(image))


def _base(engine: Engine, labels: list[str]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise LaunchError("mmdebstrap not found: make container-deps installs it")
    tarball = state_dir() / "images" / f"rootfs-{SUITE}.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates",
         SUITE, str(tarball)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise LaunchError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
    try:
        engine.run(["import", "--change", 'CMD ["/bin/bash"]', str(tarball), BASE])
    finally:
        tarball.unlink(missing_ok=True)


def _build_args(context: Path, dockerfile: Path, image: str, *extra: str) -> list[str]:
    args = ["build", "--format", "docker", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE}",
            "-f", str(dockerfile), "-t", image, *extra]  # fmt: skip
    if HOST_CA.is_file():
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg",
                 "PIP_CERT=/run/host-ca.crt"]  # fmt: skip
    return [*args, str(context)]


def _app(engine: Engine, labels: list[str]) -> None:
    latest = APP.rsplit(":", 1)[0] + ":latest"
    engine.run(_build_args(PROJECT_ROOT, PROJECT_ROOT / "Dockerfile", APP, "-t", latest,
                           *labels), timeout=1800)  # fmt: skip


def _kafka(engine: Engine, labels: list[str]) -> None:
    libs = resolve_libs(KafkaConfig())
    context = state_dir() / "images" / "kafka"
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(PROJECT_ROOT / "deploy" / "images" / "kafka", context)
    shutil.copytree(libs, context / "libs", ignore=shutil.ignore_patterns(".resolved"))
    shutil.copy(LOG4J, context / LOG4J.name)  # the local broker's logging, one file for both
    engine.run(_build_args(context, context / "Containerfile", KAFKA, *labels), timeout=1800)


def _redis(engine: Engine, labels: list[str]) -> None:
    context = PROJECT_ROOT / "deploy" / "images" / "redis"
    engine.run(_build_args(context, context / "Containerfile", REDIS, *labels), timeout=900)


def write_env() -> Path:
    """The compose variables naming the local images (``--env-file``), beside the state."""
    path = state_dir() / "images" / "images.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"ERPBRIDGE_IMAGE={APP}\nERPBRIDGE_KAFKA_IMAGE={KAFKA}\n"
                    f"ERPBRIDGE_REDIS_IMAGE={REDIS}\n")  # fmt: skip
    return path
