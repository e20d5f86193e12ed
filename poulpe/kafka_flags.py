"""The Kafka flags: their checks at start, and the connection options the consumer and the producer share.

settings.py runs these checks from `Settings.validate`, so this module reads the flags through `KafkaFlags`, the
part of `Settings` it needs, rather than importing settings.py back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from poulpe.errors import SettingsError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # what Kafka accepts as a topic name


class Revealable(Protocol):
    """A secret (settings.Secret): false when empty, its value only through `reveal`."""

    def reveal(self) -> str: ...

    def __bool__(self) -> bool: ...


class KafkaFlags(Protocol):
    """The Kafka flags of `Settings`, read-only."""

    @property
    def kafka_servers(self) -> str | None: ...
    @property
    def kafka_topic(self) -> str | None: ...
    @property
    def kafka_resp_topic(self) -> str | None: ...
    @property
    def kafka_group(self) -> str: ...
    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str | None: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> Revealable | None: ...
    @property
    def kafka_ssl_cafile(self) -> Path | None: ...
    @property
    def kafka_ssl_certfile(self) -> Path | None: ...
    @property
    def kafka_ssl_keyfile(self) -> Path | None: ...


def check_kafka(settings: KafkaFlags) -> None:
    """Raise SettingsError naming the first Kafka flag that cannot work."""
    if not settings.kafka_servers:
        for flag in ("kafka_topic", "kafka_resp_topic", "kafka_sasl_mechanism", "kafka_sasl_username"):
            if getattr(settings, flag):
                raise SettingsError(f"--{flag} needs --kafka_servers")
        return
    if not servers(settings):
        raise SettingsError("--kafka_servers must list host:port pairs separated by commas")
    for flag in ("kafka_topic", "kafka_resp_topic"):
        value = getattr(settings, flag)
        if not value:
            raise SettingsError(f"--kafka_servers needs --{flag}")
        if not _TOPIC.fullmatch(value):
            raise SettingsError(f"--{flag} must be a Kafka topic name: 1-249 of A-Z a-z 0-9 . _ -")
    if settings.kafka_topic == settings.kafka_resp_topic:
        raise SettingsError("--kafka_resp_topic must differ from --kafka_topic: results would be read as jobs")
    if not settings.kafka_group.strip():
        raise SettingsError("--kafka_group must not be empty")
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(f"--kafka_security_protocol must be one of {', '.join(PROTOCOLS)}")
    sasl = protocol.startswith("SASL_")
    if sasl:
        if (settings.kafka_sasl_mechanism or "").upper() not in MECHANISMS:
            raise SettingsError(f"--kafka_sasl_mechanism must be one of {', '.join(MECHANISMS)} with {protocol}")
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise SettingsError(f"{protocol} needs --kafka_sasl_username and POULPE_KAFKA_SASL_PASSWORD")
    elif settings.kafka_sasl_mechanism or settings.kafka_sasl_username or settings.kafka_sasl_password:
        raise SettingsError("SASL settings need --kafka_security_protocol SASL_PLAINTEXT or SASL_SSL")
    files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    for flag in files:
        path = getattr(settings, flag)
        if path is not None:
            if not protocol.endswith("SSL"):
                raise SettingsError(f"--{flag} needs --kafka_security_protocol SSL or SASL_SSL")
            if not path.is_file():
                raise SettingsError(f"--{flag} {path} is not a file")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise SettingsError("--kafka_ssl_certfile and --kafka_ssl_keyfile go together")


def servers(settings: KafkaFlags) -> list[str]:
    return [s.strip() for s in (settings.kafka_servers or "").split(",") if re.fullmatch(r"[^\s,]+:\d{1,5}", s.strip())]


def connection(settings: KafkaFlags) -> dict[str, Any]:
    """aiokafka options for reaching the brokers: servers, TLS and SASL. The password stays a Secret until here."""
    options: dict[str, Any] = {
        "bootstrap_servers": servers(settings),
        "security_protocol": settings.kafka_security_protocol.upper(),
        "client_id": "poulpe",
    }
    if options["security_protocol"].endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    if options["security_protocol"].startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        options["sasl_mechanism"] = (settings.kafka_sasl_mechanism or "").upper()
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.reveal()
    return options
