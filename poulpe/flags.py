"""The one table of poulpe's flags: the CLI (argparse), the POULPE_* variables and docs/flags.md all come from it.

Each row names a field of `Settings` (settings.py holds the defaults and the checks). A flag is spelled as the Rust
poulpe spelled it (`--exec_dir`) and dashed (`--exec-dir`); each reads POULPE_<NAME> when not given. A secret is
wrapped in `Secret` so it never prints; an environment-only row has no flag, because `ps` shows a command line.
`python -m poulpe.flags` prints docs/flags.md (tests/test_flags.py checks it is current).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRUE = {"1", "true", "yes", "on"}


def hosts(raw: str) -> tuple[str, ...]:
    """--allow_hosts: a comma-separated list, lowercased."""
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    kind: Callable[[str], Any]
    help: str
    secret: bool = False
    switch: bool = False
    env_only: bool = False  # a secret that must never be on the command line

    @property
    def spellings(self) -> list[str]:
        dashed = self.name.replace("_", "-")
        return [f"--{self.name}", *([f"--{dashed}"] if dashed != self.name else [])]

    @property
    def env(self) -> str:
        return f"POULPE_{self.name.upper()}"

    def parse(self, raw: str) -> Any:
        """A POULPE_* variable's text as the flag's value (ValueError when it is not one)."""
        return raw.strip().lower() in TRUE if self.switch else self.kind(raw)


def _flag(name: str, kind: Callable[[str], Any], help_text: str, **options: bool) -> Flag:
    return Flag(name, kind, help_text, **options)


def _switch(name: str, help_text: str) -> Flag:
    return Flag(name, str, help_text, switch=True)


FLAGS: tuple[Flag, ...] = (
    _flag("host", str, "address to listen on (default 127.0.0.1)"),
    _flag("port", int, "port to listen on (default 8000)"),
    _flag("data", Path, "SQLite file of the embedded store (default ./poulpe.db)"),
    _flag(
        "redis",
        str,
        "redis://host:port/db, rediss://..., redis+sentinel://host:port,host:port/service or"
        " redis+cluster://host:port,host:port/: keep everything in Redis, shared by every poulpe on it (password"
        " from POULPE_REDIS_PASSWORD)",
    ),
    _flag("redis_prefix", str, "key prefix in Redis (default poulpe:)"),
    _flag("partitions", int, "Redis namespaces to spread jobs over, for Redis Cluster shards (default 1)"),
    _flag(
        "redis_replicas",
        int,
        "acknowledge a job only once this many Redis replicas hold it (WAIT; default 0: once the primary has it)",
    ),
    _flag(
        "redis_password",
        str,
        "password of --redis (environment only: a flag would show it in ps)",
        secret=True,
        env_only=True,
    ),
    _flag("cron", Path, "cron file: one job per line, seven time fields from seconds to years (see cron_task.example)"),
    _switch("cron_check", "check the --cron file and exit (0 when valid, 2 with the bad line otherwise)"),
    _flag("timezone", str, "time zone of the cron file (default UTC)"),
    _flag("dead", Path, "dead-letter directory (default ./deadpool)"),
    _flag("workers", int, "number of workers, numbered 0..N-1 (default 8)"),
    _flag("retry_interval", float, "seconds between attempts (default 10)"),
    _flag("max_retry", int, "retries after the first attempt (default 3)"),
    _flag("job_timeout", float, "default limit of one attempt, seconds (default 30)"),
    _flag("result_ttl", float, "seconds a final job's result is kept (default 86400)"),
    _flag("exec_dir", Path, "directory of the programs EXEC jobs may run (EXEC is off without it)"),
    _flag("allow_hosts", hosts, "comma-separated hosts HTTP jobs may call (default: any)"),
    _flag("smtp_server", str, "SMTP server for MAIL_TO jobs (MAIL_TO is off without it)"),
    _flag("smtp_port", int, "SMTP port"),
    _flag("smtp_name", str, "SMTP user name"),
    _flag("smtp_pwd", str, "SMTP password (prefer POULPE_SMTP_PWD)", secret=True),
    _switch("starttls", "use STARTTLS with the SMTP server"),
    _switch("smtp_tls", "use implicit TLS with the SMTP server"),
    _flag(
        "kafka_servers", str, "comma-separated Kafka brokers (host:port): take jobs from --kafka_topic (docs/kafka.md)"
    ),
    _flag("kafka_topic", str, "topic jobs come from"),
    _flag("kafka_resp_topic", str, "topic results and errors go to, keyed by job id"),
    _flag("kafka_group", str, "consumer group (default poulpe)"),
    _flag("kafka_security_protocol", str, "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default PLAINTEXT)"),
    _flag("kafka_sasl_mechanism", str, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    _flag("kafka_sasl_username", str, "SASL user name"),
    _flag("kafka_sasl_password", str, "SASL password (prefer POULPE_KAFKA_SASL_PASSWORD)", secret=True),
    _flag("kafka_ssl_cafile", Path, "CA bundle that signs the brokers' certificates"),
    _flag("kafka_ssl_certfile", Path, "client certificate (PEM) for TLS client authentication"),
    _flag("kafka_ssl_keyfile", Path, "client key (PEM) for TLS client authentication"),
    _flag(
        "kafka_session_timeout", float, "seconds the group waits for a silent consumer before reassigning (default 10)"
    ),
    _flag("kingtask_addr", str, "HOST:PORT for kingtask's Go BrokerClient: its broker protocol (off by default)"),
    _flag("max_pending", int, "Kafka jobs taken in and not yet final: the consumer pauses above this (default 10000)"),
    _flag("signing_key", str, "HMAC key signing every HTTP call (prefer POULPE_SIGNING_KEY)", secret=True),
    _flag("token", str, "bearer token every route but /health needs (prefer POULPE_TOKEN)", secret=True),
    _flag("tokens", Path, "TOML file of tokens with scopes, tenants and quotas, reloaded on SIGHUP (docs/tenants.md)"),
    _flag("lease", float, "seconds a process holds a job on a shared store (default 60)"),
    _flag("key_parallelism", int, "attempts running at once per key without limits of its own (default 0: none)"),
    _flag("key_rate", float, "attempt starts per --key_period per key without limits of its own (default 0: none)"),
    _flag("key_period", float, "seconds of --key_rate (default 1)"),
    _flag("grace", float, "seconds running attempts get on shutdown (default 30)"),
    _flag("max_body", int, "largest request body, bytes (default 1048576)"),
    _flag("log_level", str, "debug, info, warning or error (default info)"),
    _switch("log_json", "log one JSON object per line"),
    _switch("access_log", "log every HTTP request (off by default: it costs throughput)"),
    _flag("loop", str, "event loop: asyncio or uvloop (default asyncio)"),
    _flag("alert_url", str, "URL poulpe POSTs alerts to (late, slow, lease_lost, dead), signed like job calls"),
    _flag("late_after", float, "seconds after its due time a job may start before a late alert (default 60; 0: off)"),
    _flag("slow_after", float, "seconds an attempt may run before a slow alert (default 0: off)"),
    _flag(
        "otlp_endpoint", str, "OTLP/HTTP collector URL: one span per attempt (default OTEL_EXPORTER_OTLP_ENDPOINT, off)"
    ),
)
BY_NAME = {flag.name: flag for flag in FLAGS}


def markdown() -> str:
    """docs/flags.md: every flag, its variable, its default and what it does, in the table's order."""
    from poulpe.settings import Settings

    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    lines = [
        "# poulpe's flags",
        "",
        "Generated from `poulpe/flags.py` by `python -m poulpe.flags > docs/flags.md`; do not edit by hand.",
        "Every flag also reads its `POULPE_*` variable when not given (a flag wins over its variable); each",
        "`--name_with_underscores` is also spelled `--name-with-dashes`. Secrets are masked wherever they would show.",
        "",
        "| flag | variable | default | what it does |",
        "|---|---|---|---|",
    ]
    for flag in FLAGS:
        default = defaults[flag.name]
        shown = "" if default is None or default == () else f"`{default}`"
        if flag.switch:
            shown = "off"
        spelled = "(environment only)" if flag.env_only else f"`--{flag.name}`"
        kind = " (secret)" if flag.secret else ""
        lines.append(f"| {spelled} | `{flag.env}` | {shown} | {flag.help.replace('|', '/')}{kind} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
