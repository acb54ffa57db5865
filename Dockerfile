# One image for the pipeline's workers and the demo ERP (Tryton on SQLite).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 ERPBRIDGE_STATE_DIR=/data
COPY pyproject.toml README.md ./
COPY erpbridge ./erpbridge
COPY streams ./streams
COPY connectors ./connectors
COPY deploy ./deploy
COPY avro_schemas ./avro_schemas
COPY samples ./samples
RUN pip install --no-cache-dir ".[erp]"
VOLUME /data
ENTRYPOINT ["erpbridge"]
CMD ["--help"]
