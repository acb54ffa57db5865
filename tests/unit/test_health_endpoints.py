"""Each worker's endpoint: /metrics for Prometheus, /healthz while the process answers, /readyz
200 only while every readiness check says yes, else 503 with the reasons."""

from __future__ import annotations

import httpx

from erpbridge import metrics


def test_metrics_health_and_readiness_are_served_side_by_side() -> None:
    port = metrics.serve(0)
    assert port is not None
    url = f"http://127.0.0.1:{port}"
    state = {"why": "restoring its tables from their changelogs"}
    metrics.readiness_check("test-worker", lambda: state["why"])
    try:
        assert httpx.get(f"{url}/healthz").json() == {"status": "alive"}
        not_ready = httpx.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"ready": False, "not_ready": {
            "test-worker": "restoring its tables from their changelogs"}}  # fmt: skip
        state["why"] = None
        assert httpx.get(f"{url}/readyz").json() == {"ready": True, "not_ready": {}}
        metrics.readiness_check("broken", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        assert httpx.get(f"{url}/readyz").json()["not_ready"] == {
            "broken": "ZeroDivisionError: division by zero"}  # fmt: skip
        scraped = httpx.get(f"{url}/metrics")
        assert scraped.status_code == 200 and "erpbridge_sink_records" in scraped.text
        assert httpx.get(f"{url}/nowhere").status_code == 404
    finally:
        metrics._READINESS.pop("test-worker", None)
        metrics._READINESS.pop("broken", None)
