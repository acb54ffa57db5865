"""erpbridge core: what sources, stream processors and sinks share (config, codec, model, metrics, CLI)."""

__version__ = "0.1.0"
