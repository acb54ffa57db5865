"""erpbridge core: what sources, stream processors and sinks share.

Config, codec, canonical model, metrics, topic names and the CLI.
"""

__version__ = "0.1.0"
