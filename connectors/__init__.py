"""Connectors: sources that publish onto Kafka, sinks that write into ERPs, ERP clients."""
