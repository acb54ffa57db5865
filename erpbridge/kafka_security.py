"""How the project's Kafka clients authenticate and encrypt, from :class:`Settings`: one place
for kafka-python, aiokafka and Faust, so no client is left on plaintext by accident.

``SASL_SSL`` with ``SCRAM-SHA-512`` is what a production cluster should offer: TLS verifies the
broker (its CA, and its host name against the certificate), SCRAM logs the component in without
sending its password, and the broker's ACLs (:mod:`erpbridge.access`) limit each principal to
its own topics and groups. Passwords are :class:`pydantic.SecretStr` (masked in any repr) and
are handed only to the client libraries, never to a log line.
"""

from __future__ import annotations

import ssl
from typing import Any

from erpbridge.config import Settings
from erpbridge.tls import client_context, readable_file


def check(settings: Settings) -> None:
    """Refuse settings a client could not connect with: SASL without a user or password, TLS
    files that are not there, a key without its certificate."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_") and not (
        settings.kafka_sasl_username and settings.kafka_sasl_password.get_secret_value()
    ):
        raise ValueError(f"kafka_security_protocol {protocol} needs kafka_sasl_username and "
                         "kafka_sasl_password")  # fmt: skip
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together (mutual TLS)")
    if protocol in ("SSL", "SASL_SSL"):
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            readable_file(getattr(settings, name), name)


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every aiokafka/Faust client: the broker verified against the CA file
    (or the system's store) with its host name checked; the client's certificate if given."""
    if not uses_tls(settings):
        return None
    return client_context(settings.kafka_ssl_cafile, settings.kafka_ssl_certfile,
                          settings.kafka_ssl_keyfile)  # fmt: skip


def _sasl(settings: Settings) -> dict[str, Any]:
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return {}
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
    }


def client_options(settings: Settings) -> dict[str, Any]:
    """``bootstrap_servers`` and the security options of a kafka-python or an aiokafka client
    (both take the same names)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        **_sasl(settings),
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context  # kafka-python then ignores its ssl_* file options
    return options


def librdkafka_options(settings: Settings) -> dict[str, Any]:
    """The same for a librdkafka client (confluent-kafka), in its spelling: the broker verified
    against the CA file (or the system's store) with its host name checked."""
    options: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["sasl.username"] = settings.kafka_sasl_username
        options["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if uses_tls(settings):
        options["ssl.endpoint.identification.algorithm"] = "https"
        if settings.kafka_ssl_cafile:
            options["ssl.ca.location"] = settings.kafka_ssl_cafile
        if settings.kafka_ssl_certfile:
            options["ssl.certificate.location"] = settings.kafka_ssl_certfile
            options["ssl.key.location"] = settings.kafka_ssl_keyfile
    return options


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials``: SASL (over TLS or not), TLS alone, or None (plaintext)."""
    import faust

    context = ssl_context(settings)
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
