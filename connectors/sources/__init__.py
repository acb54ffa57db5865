"""Source connectors: read upstream input, publish it onto Kafka keyed by claim id."""
