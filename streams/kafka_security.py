"""Kafka client security (SASL, TLS) from the LTV_KAFKA_* settings, in one place.

Every Kafka client of the project authenticates the same way: the Faust
app's own consumer and producer through ``broker_credentials``, and every
plain aiokafka client (the unit of work, the lag monitor, ``ltv demo``,
``backfill``, ``watch``, topic creation, the benchmarks) through
:func:`kafka_client`. Both come from :func:`faust_credentials`, and the
aiokafka arguments are Faust's own translation of those credentials
(``credentials_to_aiokafka_auth``), so the app and the plain clients cannot
disagree on how a setting is applied.

Which combinations are valid is decided by the settings themselves
(``streams.settings.kafka_security_problem``); this module only builds.
"""

from __future__ import annotations

import ssl
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import CredentialsT

from streams.settings import Settings

__all__ = ["SECURITY_VARIABLES", "faust_credentials", "kafka_auth", "kafka_client", "ssl_context"]

#: The LTV_* variables of the Kafka security settings (passed on to child processes).
SECURITY_VARIABLES = frozenset(
    f"LTV_{name.upper()}" for name in Settings.model_fields if name.startswith("kafka_")
)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL listeners (None for the others).

    Verifies the broker's certificate and host name against
    LTV_KAFKA_SSL_CAFILE, else against the system's trust store, and
    presents the client certificate when one is configured.
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if cafile is None else str(cafile)
    )
    if settings.kafka_ssl_certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile), None if keyfile is None else str(keyfile)
        )
    return context


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """The ``broker_credentials`` of the Faust app (None: PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return SSLCredentials(context)
    password = settings.kafka_sasl_password
    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=None if password is None else password.get_secret_value(),
        # With a context Faust selects SASL_SSL, without one SASL_PLAINTEXT.
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def kafka_auth(settings: Settings) -> dict[str, Any]:
    """The security arguments of an aiokafka client (``security_protocol`` and the rest)."""
    return dict(credentials_to_aiokafka_auth(faust_credentials(settings)))


def kafka_client(settings: Settings) -> dict[str, Any]:
    """The connection arguments of an aiokafka client: bootstrap servers and security."""
    return {"bootstrap_servers": settings.bootstrap_servers, **kafka_auth(settings)}
