"""Faust agents, one module each. Importing this package registers them on the app."""

from streams.agents import budgets, claims, invoices, ticks

__all__ = ["budgets", "claims", "invoices", "ticks"]
