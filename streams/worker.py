"""Run the stream processors: ``erpbridge streams`` (a Faust worker)."""

from __future__ import annotations

import sys

from erpbridge import metrics


def main(log_level: str = "info") -> None:
    from streams import agents  # noqa: F401  (registers the agents on the app)
    from streams.app import app, codecs, settings

    codecs.register_all("postings", "rejected")  # fails fast when the registry is missing
    port = metrics.serve(settings.metrics_port, settings.metrics_host)
    if port is not None:
        print(f"metrics on 127.0.0.1:{port}/metrics", flush=True)
    sys.argv = [sys.argv[0], "worker", "--loglevel", log_level, "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
