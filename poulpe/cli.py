"""`poulpe [flags]`: every flag also reads POULPE_<FLAG>; the Rust poulpe's names and dashed spellings both work."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from poulpe import __version__
from poulpe.flag_hints import HintingParser
from poulpe.settings import Secret, Settings, SettingsError

TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> list[str]:
    spellings = [f"--{name}"]
    if "_" in name:
        spellings.append(f"--{name.replace('_', '-')}")
    return spellings


def _env(name: str) -> str | None:
    return os.environ.get(f"POULPE_{name.upper()}")


def build_parser() -> argparse.ArgumentParser:
    parser = HintingParser(
        prog="poulpe",
        description="A job manager for online systems. Every flag can also be given as POULPE_<FLAG>.",
        epilog="operator commands: poulpe submit | status ID | dead list|retry|rm | cron check FILE (each with --help)",
    )
    parser.add_argument("--version", action="version", version=f"poulpe {__version__}")

    def add(name: str, kind: Callable[[str], Any], help_text: str, *, secret: bool = False) -> None:
        parser.add_argument(
            *_flag(name), dest=name, type=kind, default=None, help=help_text, metavar="SECRET" if secret else None
        )

    def switch(name: str, help_text: str) -> None:
        parser.add_argument(*_flag(name), dest=name, action="store_true", default=None, help=help_text)

    add("host", str, "address to listen on (default 127.0.0.1)")
    add("port", int, "port to listen on (default 8000)")
    add("data", Path, "SQLite file of the embedded store (default ./poulpe.db)")
    add(
        "redis",
        str,
        "redis://host:port/db, rediss://... or redis+sentinel://host:port,host:port/service: keep everything in"
        " Redis, shared by every poulpe on it (password from POULPE_REDIS_PASSWORD)",
    )
    add("redis_prefix", str, "key prefix in Redis (default poulpe:)")
    add("cron", Path, "cron file: one job per line, seven time fields from seconds to years (see cron_task.example)")
    switch("cron_check", "check the --cron file and exit (0 when valid, 2 with the bad line otherwise)")
    add("timezone", str, "time zone of the cron file (default UTC)")
    add("dead", Path, "dead-letter directory (default ./deadpool)")
    add("workers", int, "number of workers, numbered 0..N-1 (default 8)")
    add("retry_interval", float, "seconds between attempts (default 10)")
    add("max_retry", int, "retries after the first attempt (default 3)")
    add("job_timeout", float, "default limit of one attempt, seconds (default 30)")
    add("result_ttl", float, "seconds a final job's result is kept (default 86400)")
    add("exec_dir", Path, "directory of the programs EXEC jobs may run (EXEC is off without it)")
    add("allow_hosts", str, "comma-separated hosts HTTP jobs may call (default: any)")
    add("smtp_server", str, "SMTP server for MAIL_TO jobs (MAIL_TO is off without it)")
    add("smtp_port", int, "SMTP port")
    add("smtp_name", str, "SMTP user name")
    add("smtp_pwd", str, "SMTP password (prefer POULPE_SMTP_PWD)", secret=True)
    switch("starttls", "use STARTTLS with the SMTP server")
    switch("smtp_tls", "use implicit TLS with the SMTP server")
    add("kafka_servers", str, "comma-separated Kafka brokers (host:port): take jobs from --kafka_topic (docs/kafka.md)")
    add("kafka_topic", str, "topic jobs come from")
    add("kafka_resp_topic", str, "topic results and errors go to, keyed by job id")
    add("kafka_group", str, "consumer group (default poulpe)")
    add("kafka_security_protocol", str, "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default PLAINTEXT)")
    add("kafka_sasl_mechanism", str, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    add("kafka_sasl_username", str, "SASL user name")
    add("kafka_sasl_password", str, "SASL password (prefer POULPE_KAFKA_SASL_PASSWORD)", secret=True)
    add("kafka_ssl_cafile", Path, "CA bundle that signs the brokers' certificates")
    add("kafka_ssl_certfile", Path, "client certificate (PEM) for TLS client authentication")
    add("kafka_ssl_keyfile", Path, "client key (PEM) for TLS client authentication")
    add("kafka_session_timeout", float, "seconds the group waits for a silent consumer before reassigning (default 10)")
    add("kingtask_addr", str, "HOST:PORT for kingtask's Go BrokerClient: its broker protocol (off by default)")
    add("max_pending", int, "Kafka jobs taken in and not yet final: the consumer pauses above this (default 10000)")
    add("signing_key", str, "HMAC key signing every HTTP call (prefer POULPE_SIGNING_KEY)", secret=True)
    add("token", str, "bearer token every route but /health needs (prefer POULPE_TOKEN)", secret=True)
    add("lease", float, "seconds a process holds a job on a shared store (default 60)")
    add("key_parallelism", int, "attempts running at once per key without limits of its own (default 0: none)")
    add("key_rate", float, "attempt starts per --key_period per key without limits of its own (default 0: none)")
    add("key_period", float, "seconds of --key_rate (default 1)")
    add("grace", float, "seconds running attempts get on shutdown (default 30)")
    add("max_body", int, "largest request body, bytes (default 1048576)")
    add("log_level", str, "debug, info, warning or error (default info)")
    switch("log_json", "log one JSON object per line")
    switch("access_log", "log every HTTP request (off by default: it costs throughput)")
    add("loop", str, "event loop: asyncio or uvloop (default asyncio)")
    return parser


SECRETS = {"smtp_pwd", "signing_key", "token", "kafka_sasl_password"}
SWITCHES = {"starttls", "smtp_tls", "log_json", "access_log", "cron_check"}


def settings_from(argv: Sequence[str]) -> Settings:
    """Flags win over POULPE_* variables, which win over the defaults."""
    return settings_of(vars(build_parser().parse_args(argv)))


def settings_of(args: dict[str, Any]) -> Settings:
    """Settings from parsed flags (None where a flag was not given), the POULPE_* variables and the defaults."""
    values: dict[str, Any] = {}
    for field in Settings.__dataclass_fields__:
        if field not in args:
            continue
        value = args[field]
        if value is None:
            raw = _env(field)
            if raw is None or raw == "":
                continue
            value = raw.strip().lower() in TRUE if field in SWITCHES else raw
        values[field] = value
    try:
        for key in ("port", "workers", "max_retry", "smtp_port", "max_body", "max_pending", "key_parallelism"):
            if key in values:
                values[key] = int(values[key])
        floats = ("retry_interval", "job_timeout", "result_ttl", "lease", "grace", "kafka_session_timeout")
        for key in (*floats, "key_rate", "key_period"):
            if key in values:
                values[key] = float(values[key])
    except ValueError as exc:
        raise SettingsError(f"a flag has a value that is not a number: {exc}") from None
    for key in ("data", "cron", "dead", "exec_dir", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        if key in values:
            values[key] = Path(values[key])
    for key in SECRETS & values.keys():
        values[key] = Secret(str(values[key])) if values[key] else None
    if "allow_hosts" in values:
        values["allow_hosts"] = tuple(h.strip().lower() for h in str(values["allow_hosts"]).split(",") if h.strip())
    return Settings(**values).validate()


def serve(settings: Settings) -> None:
    import uvicorn

    from poulpe import logs
    from poulpe.app import create_app
    from poulpe.http_protocol import connection_options
    from poulpe.server import PoulpeServer

    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=known_secrets(settings))
    # The store's writer thread gives up the GIL at each fsync and must take it back from a busy event loop; at
    # the default 5 ms switch interval that wait, not the disk, bounds group-commit throughput (docs/design.md).
    sys.setswitchinterval(0.0005)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=settings.loop,
        lifespan="on",
        access_log=settings.access_log,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # poulpe binds where it is told; a proxy's X-Forwarded-For changes nothing here
        timeout_graceful_shutdown=5,
        ws_max_size=settings.max_body,
        **connection_options(settings.workers),  # httptools, with bounded connections and request heads
    )
    PoulpeServer(config, app, settings.grace).run()


def known_secrets(settings: Settings) -> list[str]:
    """Every secret value poulpe holds, for the log redactor to mask wherever it shows."""
    values = [getattr(settings, name) for name in Settings.__dataclass_fields__]
    secrets = [value.reveal() for value in values if isinstance(value, Secret) and value]
    return [*secrets, *filter(None, [os.environ.get("POULPE_REDIS_PASSWORD")])]


def check_start(settings: Settings) -> None:
    """Refuse to start on what would fail later: a bad cron line is reported with its line number."""
    if settings.cron_check and settings.cron is None:
        raise SettingsError("--cron_check needs --cron FILE")
    if settings.cron is not None:
        from poulpe.cron import CronError
        from poulpe.cron_check import verdict

        try:
            verdict(settings, settings.cron)
        except CronError as exc:
            raise SettingsError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["cron", "check"]:
        from poulpe.cron_check import main as cron_check

        raise SystemExit(cron_check(argv[2:]))
    if argv[:1] and argv[0] in ("submit", "status", "dead", "keys"):  # operator commands: poulpe/ops_cli.py
        from poulpe import ops_cli

        raise SystemExit(ops_cli.main(argv))
    try:
        settings = settings_from(argv)
        check_start(settings)
    except SettingsError as exc:
        print(f"poulpe: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.cron_check:
        print(f"poulpe: {settings.cron} is valid")
        raise SystemExit(0)
    serve(settings)
