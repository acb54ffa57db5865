"""Run the stream processors: ``erpbridge streams`` (a Faust worker)."""

from __future__ import annotations

import sys

from erpbridge import metrics


def main(log_level: str = "info") -> None:
    from streams import (
        agents,  # noqa: F401  (registers the agents on the app)
        framework,
    )
    from streams.app import app, codecs, settings

    framework.check()  # the repairs' framework members are there (or the worker refuses)
    framework.check_when_started(app)  # and the consumer's, once the worker made it
    # fails fast when the registry is missing
    codecs.register_all("postings", "claim_status", "claim_events", "invoice_refs")
    metrics.serve_from(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", log_level, "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
