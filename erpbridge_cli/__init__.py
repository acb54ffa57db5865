"""The composition root: the ``erpbridge`` command and the demo, above every other package.

It wires the core (:mod:`erpbridge`), the connectors, the stream processors and the local
stack together; nothing imports it (``make lint`` checks the layers with import-linter).
"""
