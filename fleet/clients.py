"""Kafka and Redis client configurations built from the one settings object.

Every client of the project (confluent-kafka, aiokafka through Faust, redis-py) takes its
address and security settings from here, so the plain and the secure profile differ only
in ``FLEET_*`` variables (docs/security.md).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleet.settings import Settings

if TYPE_CHECKING:  # heavy imports stay out of `fleet --help`
    import faust
    import redis
    import redis.asyncio


def _secure(settings: Settings) -> bool:
    return settings.kafka_security_protocol == "SASL_SSL"


def _password(settings: Settings) -> str:
    secret = settings.kafka_password
    return secret.get_secret_value() if secret is not None else ""


def confluent_config(settings: Settings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) config: bootstrap and security, then ``extra``."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if _secure(settings):
        config |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_username,
            "sasl.password": _password(settings),
        }
        if settings.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return config | dict(extra or {})


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker's certificate against the configured CA (or the system's)."""
    cafile = settings.kafka_ssl_cafile
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of aiokafka's producer and consumer: bootstrap and security."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    if _secure(settings):
        kwargs |= {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": _password(settings),
            "ssl_context": kafka_ssl_context(settings),
        }
    return kwargs


def faust_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """Faust's ``broker_credentials`` (None with PLAINTEXT)."""
    if not _secure(settings):
        return None
    import faust

    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=_password(settings),
        ssl_context=kafka_ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )


def redis_kwargs(settings: Settings) -> dict[str, Any]:
    """redis-py connection arguments beyond the URL: ACL user, password, TLS CA."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_cafile is not None and settings.redis_url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    return kwargs


def redis_client(settings: Settings, **extra: Any) -> redis.Redis:
    """A blocking Redis client of the read model (``extra``: e.g. decode_responses=True)."""
    import redis

    return redis.Redis.from_url(settings.redis_url, **redis_kwargs(settings), **extra)


def redis_async_client(settings: Settings, **extra: Any) -> redis.asyncio.Redis:
    """An asyncio Redis client of the read model."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(settings.redis_url, **redis_kwargs(settings), **extra)
