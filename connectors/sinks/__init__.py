"""Sink connectors: consume normalized claims and book them in an ERP."""
