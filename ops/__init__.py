"""Operator tooling: one view over every failure topic, safe replay, the audit trail.

Above the core (:mod:`erpbridge`), beside the connectors and the processors; the command
(:mod:`erpbridge_cli`) and the ops HTTP API sit on top of it.
"""
