"""`poulpe [flags]`: the flags of flags.py's table, each also read from POULPE_<FLAG>; operator subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from poulpe import __version__
from poulpe.flag_hints import HintingParser
from poulpe.flags import FLAGS
from poulpe.settings import Secret, Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = HintingParser(
        prog="poulpe",
        description="A job manager for online systems. Every flag can also be given as POULPE_<FLAG>.",
        epilog="operator commands: poulpe submit | status ID | dead list|retry|rm | cron check FILE | "
        "cron list|run|pause|resume|backfill (each with --help)",
    )
    parser.add_argument("--version", action="version", version=f"poulpe {__version__}")
    for flag in FLAGS:  # one table (flags.py): these flags, their variables and docs/flags.md
        if flag.env_only:
            continue
        if flag.switch:
            parser.add_argument(*flag.spellings, dest=flag.name, action="store_true", default=None, help=flag.help)
        else:
            metavar = "SECRET" if flag.secret else None
            parser.add_argument(
                *flag.spellings, dest=flag.name, type=flag.kind, default=None, help=flag.help, metavar=metavar
            )
    return parser


def settings_from(argv: Sequence[str]) -> Settings:
    """Flags win over POULPE_* variables, which win over the defaults."""
    return settings_of(vars(build_parser().parse_args(argv)))


def settings_of(args: dict[str, Any]) -> Settings:
    """Settings from parsed flags (None where a flag was not given), the POULPE_* variables and the defaults."""
    values: dict[str, Any] = {}
    for flag in FLAGS:
        if flag.name not in args and not flag.env_only:
            continue
        value = args.get(flag.name)
        if value is None:
            raw = os.environ.get(flag.env)
            if raw is None or raw == "":
                continue
            try:
                value = flag.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{flag.env} has a value that is not a number: {exc}") from None
        if flag.secret:
            value = Secret(str(value)) if value else None
        values[flag.name] = value
    return Settings(**values).validate()


def serve(settings: Settings) -> None:
    from poulpe import logs
    from poulpe.server import build_server

    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=known_secrets(settings))
    # The store's writer thread gives up the GIL at each fsync and must take it back from a busy event loop; at
    # the default 5 ms switch interval that wait, not the disk, bounds group-commit throughput (docs/design.md).
    sys.setswitchinterval(0.0005)
    build_server(settings).run()


def known_secrets(settings: Settings) -> list[str]:
    """Every secret value poulpe holds, for the log redactor to mask wherever it shows."""
    values = [getattr(settings, name) for name in Settings.__dataclass_fields__]
    return [value.reveal() for value in values if isinstance(value, Secret) and value]


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
    if argv[:1] == ["cron"]:  # a running poulpe's lines: poulpe/cron_cli.py
        from poulpe.cron_cli import main as cron_cli

        raise SystemExit(cron_cli(argv[1:]))
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
