"""Every flag and secret of `poulpe`, its default and its checks, in one frozen record (flags.py: the table)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from poulpe.errors import SettingsError as SettingsError  # where it was always imported from
from poulpe.kafka_flags import check_kafka

LOG_LEVELS = ("debug", "info", "warning", "error")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


class Secret:
    """A value that never prints: its repr and str are masked, so it cannot leak into logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data: Path = Path("poulpe.db")
    redis: str | None = None
    redis_prefix: str = "poulpe:"
    redis_password: Secret | None = None  # POULPE_REDIS_PASSWORD only
    partitions: int = 1  # Redis namespaces one deployment spreads over (docs/scale.md)
    redis_replicas: int = 0  # WAIT for this many replicas before a job is acknowledged (docs/scale.md)
    cron: Path | None = None
    cron_check: bool = False
    timezone: str = "UTC"
    dead: Path = Path("deadpool")
    workers: int = 8
    retry_interval: float = 10.0
    max_retry: int = 3
    job_timeout: float = 30.0
    result_ttl: float = 86400.0
    exec_dir: Path | None = None
    allow_hosts: tuple[str, ...] = ()
    smtp_server: str | None = None
    smtp_port: int = 25
    smtp_name: str | None = None
    smtp_pwd: Secret | None = None
    starttls: bool = False
    smtp_tls: bool = False
    kafka_servers: str | None = None
    kafka_topic: str | None = None
    kafka_resp_topic: str | None = None
    kafka_group: str = "poulpe"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_session_timeout: float = 10.0
    kingtask_addr: str | None = None
    max_pending: int = 10_000
    signing_key: Secret | None = None
    token: Secret | None = None
    tokens: Path | None = None  # the tokens file: scopes, tenants, quotas (SPEC 10.7, docs/tenants.md)
    lease: float = 60.0
    key_parallelism: int = 0  # defaults for every key without limits of its own (SPEC 10.1); 0: none
    key_rate: float = 0.0
    key_period: float = 1.0
    grace: float = 30.0
    max_body: int = 1024 * 1024
    log_level: str = "info"
    log_json: bool = False
    access_log: bool = False
    loop: str = "asyncio"
    alert_url: str | None = None  # where alerts are POSTed (SPEC 10.6, alerts.py)
    late_after: float = 60.0  # seconds after its due time a job may start before a `late` alert; 0: off
    slow_after: float = 0.0  # seconds an attempt may run before a `slow` alert; 0: off
    otlp_endpoint: str | None = None  # OTLP/HTTP collector of the attempt spans (else OTEL_EXPORTER_OTLP_ENDPOINT)

    def validate(self) -> Settings:
        """Raise SettingsError naming the first flag that cannot work."""
        checks: list[tuple[bool, str, str]] = [
            (1 <= self.workers <= 1024, "workers", "must be between 1 and 1024"),
            (0 < self.port < 65536, "port", "must be a TCP port (1-65535)"),
            (self.retry_interval >= 0, "retry_interval", "must be >= 0"),
            (0 <= self.max_retry <= 100, "max_retry", "must be between 0 and 100"),
            (self.job_timeout > 0, "job_timeout", "must be > 0"),
            (self.result_ttl > 0, "result_ttl", "must be > 0"),
            (self.lease > 0, "lease", "must be > 0"),
            (0 <= self.redis_replicas <= 16, "redis_replicas", "must be between 0 and 16"),
            (1 <= self.partitions <= 1024, "partitions", "must be between 1 and 1024"),
            (self.key_parallelism >= 0, "key_parallelism", "must be >= 0 (0: no limit)"),
            (self.key_rate >= 0, "key_rate", "must be >= 0 (0: no limit)"),
            (self.key_period > 0, "key_period", "must be > 0"),
            (self.grace >= 0, "grace", "must be >= 0"),
            (self.late_after >= 0, "late_after", "must be >= 0 (0: no late alerts)"),
            (self.slow_after >= 0, "slow_after", "must be >= 0 (0: no slow alerts)"),
            (self.max_body >= 1024, "max_body", "must be at least 1024 bytes"),
            (1 <= self.kafka_session_timeout <= 300, "kafka_session_timeout", "must be between 1 and 300 seconds"),
            (1 <= self.max_pending <= 10_000_000, "max_pending", "must be between 1 and 10000000"),
            (self.loop in ("asyncio", "uvloop"), "loop", "must be asyncio or uvloop"),
            (self.log_level.lower() in LOG_LEVELS, "log_level", "must be debug, info, warning or error"),
        ]
        for ok, flag, why in checks:
            if not ok:
                raise SettingsError(f"--{flag} {why}")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise SettingsError(
                f"--timezone {self.timezone!r} is not an IANA time zone name (such as Europe/Paris)"
            ) from None
        if self.redis is not None and not self.redis.startswith(REDIS_SCHEMES):
            raise SettingsError(f"--redis must be a URL starting with {', '.join(REDIS_SCHEMES)}")
        if self.redis is None and (self.partitions > 1 or self.redis_replicas > 0):
            raise SettingsError("--partitions and --redis_replicas need --redis (the SQLite store has no replicas)")
        if not self.redis_prefix or any(c in self.redis_prefix for c in " }"):
            raise SettingsError("--redis_prefix must be non-empty, without spaces or '}'")
        check_kafka(self)
        if self.smtp_tls and self.starttls:
            raise SettingsError("--smtp_tls and --starttls exclude each other: choose implicit TLS or STARTTLS")
        if self.kingtask_addr is not None:
            self.kingtask_bind  # noqa: B018  (raises SettingsError on a bad address)
        if self.exec_dir is not None and not self.exec_dir.is_dir():
            raise SettingsError(f"--exec_dir {self.exec_dir} is not a directory")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def kingtask_bind(self) -> tuple[str, int] | None:
        """--kingtask_addr HOST:PORT (an IPv6 host in brackets) as (host, port)."""
        if self.kingtask_addr is None:
            return None
        host, _, port = self.kingtask_addr.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("--kingtask_addr must be HOST:PORT, such as 127.0.0.1:9595")
        return host, int(port)

    @property
    def exec_root(self) -> Path | None:
        """The real path of --exec_dir: EXEC confinement compares real paths."""
        return Path(os.path.realpath(self.exec_dir)) if self.exec_dir is not None else None
