# One image for the pipeline's workers, the CLI and the demo ERP (Tryton on SQLite).
#
# Debian bookworm with Debian's Python 3.11. BASE_IMAGE is Docker Hub's debian:bookworm-slim for
# people who have Docker Hub; `make image` builds the same Debian from Debian's packages
# (mmdebstrap) and passes it as localhost/erpbridge-base:bookworm, so no registry is needed.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# PIP_CERT: a CA bundle mounted at build time where PyPI is reached through a TLS proxy
ARG PIP_CERT=
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md /src/
COPY erpbridge /src/erpbridge
COPY erpbridge_cli /src/erpbridge_cli
COPY streams /src/streams
COPY connectors /src/connectors
COPY deploy /src/deploy
COPY ops /src/ops
COPY books /src/books
RUN ${PIP_CERT:+env PIP_CERT=$PIP_CERT} /opt/venv/bin/pip install -q --no-cache-dir \
      --disable-pip-version-check "/src[erp,postgres]"

FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /home/erpbridge erpbridge \
 && mkdir -p /data /archive \
 && chown erpbridge:erpbridge /data /archive
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY avro_schemas ./avro_schemas
COPY samples ./samples
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 ERPBRIDGE_STATE_DIR=/data \
    ERPBRIDGE_SCHEMA_DIR=/app/avro_schemas \
    ERPBRIDGE_METRICS_HOST=0.0.0.0 ERPBRIDGE_METRICS_PORT=9464
USER 10001
# /data (state: RocksDB tables, Tryton's database, the books) and /archive (originals): mount
# volumes there; no VOLUME line, so one-shot containers leave no anonymous volumes behind
# /healthz of the worker's metrics server (the streams workers, sinks and sources serve it);
# one-shot commands (topics, demo, CLI) run with --no-healthcheck or healthcheck: disable.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-m", "deploy.images.probe", "healthz"]
ENTRYPOINT ["erpbridge"]
CMD ["--help"]
