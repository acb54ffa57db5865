"""Faust agents, one module each. Importing this package registers them on the app."""

from streams.agents import normalize_claims

__all__ = ["normalize_claims"]
