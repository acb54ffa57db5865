"""Schema registry: a Confluent REST API client and the embedded, Kafka-backed server."""
