"""The image's probes.

``python3 -m deploy.images.probe [healthz|readyz|<url>]``: ask the worker's own metrics server
(ERPBRIDGE_METRICS_PORT on 127.0.0.1), or a URL as given (the webhook and the ops console serve
their own /healthz). Exit 0 when the answer is 200, 1 otherwise, with the reason on stderr: what
a HEALTHCHECK, a compose healthcheck and a Kubernetes exec probe expect.

``python3 -m deploy.images.probe wait [--timeout S] kafka http://...``: wait until each answers
(``kafka``: the configured brokers, ERPBRIDGE_KAFKA_* with its TLS and SASL settings, answer a
metadata request; a URL: 200), for one-shot jobs started before their dependencies are ready
(podman before 4.6 ignores compose's ``condition: service_healthy``).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request


def url_of(target: str) -> str:
    if target.startswith(("http://", "https://")):
        return target
    port = os.environ.get("ERPBRIDGE_METRICS_PORT", "9464")
    return f"http://127.0.0.1:{port}/{target.lstrip('/')}"


def answers(target: str, quiet: bool = False) -> bool:
    if target == "kafka":
        return _brokers_answer()
    url = url_of(target)
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - our own URL
            return bool(answer.status == 200)
    except urllib.error.HTTPError as exc:
        why = f"{exc.code} {exc.read(300).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        why = str(exc)
    if not quiet:
        print(f"{url}: {why}", file=sys.stderr)
    return False


def _brokers_answer() -> bool:
    from deploy.local.kafka import metadata_answers
    from erpbridge.config import get_settings
    from erpbridge.kafka_security import client_options

    return metadata_answers(request_timeout_ms=5000, **client_options(get_settings()))


def wait(targets: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    for target in targets:
        while not answers(target, quiet=True):
            if time.monotonic() > deadline:
                print(f"{target}: no answer within {timeout:.0f} s", file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"{target}: answers", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["wait"]:
        rest = argv[1:]
        timeout = 180.0
        if rest[:1] == ["--timeout"]:
            timeout, rest = float(rest[1]), rest[2:]
        return wait(rest, timeout)
    return 0 if answers(argv[0] if argv else "healthz") else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
