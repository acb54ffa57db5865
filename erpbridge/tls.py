"""TLS for the project's clients, one rule for all: always verify the server (its certificate
chain and its host name), against a given CA file (a company's private CA) or the system's
trust store; never a switch that turns verification off.

Used by the Kafka clients (:mod:`erpbridge.kafka_security`) and the HTTP clients of the ERP
writers and the feedback sender (their ``*_CA_FILE`` settings).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(cafile: str = "", certfile: str = "", keyfile: str = "") -> ssl.SSLContext:
    """A verifying client context; ``certfile``/``keyfile``: the client's own (mutual TLS)."""
    context = ssl.create_default_context(cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        context.load_cert_chain(certfile, keyfile or None)
    return context


def http_verify(ca_file: str) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the CA file's context when one is given, else True (its default
    trust store). Either way https answers are verified."""
    return client_context(ca_file) if ca_file else True


def readable_file(value: str, what: str) -> str:
    """A settings check: an empty value, or a file that is there (``what`` names it)."""
    if value and not Path(value).is_file():
        raise ValueError(f"{what} {value!r} is not a readable file")
    return value


def check_ca_file(value: str) -> str:
    """The ``*_CA_FILE`` settings' validator."""
    return readable_file(value, "CA file")
