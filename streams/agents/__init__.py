"""Faust agents, one module each. Importing this package registers them on the app."""

from streams.agents import claims, invoices, ticks

__all__ = ["claims", "invoices", "ticks"]
