"""The agents, one module each. Importing this package registers them on the app (either
runtime: :func:`streams.agents.outputs.serve`)."""

from streams.agents import budgets, claims, invoices, ticks

__all__ = ["budgets", "claims", "invoices", "ticks"]
