"""`poulpe [flags]`: the flags of flags.py's table, each also read from POULPE_<FLAG>; operator subcommands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from poulpe.flag_parser import build_parser as build_parser  # the server's parser, shared with `poulpe cron check`
from poulpe.flag_parser import settings_from as settings_from
from poulpe.settings import Secret, Settings, SettingsError


def serve(settings: Settings) -> None:
    from poulpe import logs
    from poulpe.server import build_server

    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=known_secrets(settings))
    # The store's writer thread gives up the GIL at each fsync and must take it back from a busy event loop; at
    # the default 5 ms switch interval that wait, not the disk, bounds group-commit throughput (docs/design.md).
    sys.setswitchinterval(0.0005)
    build_server(settings, tune_gc=True).run()


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
    if settings.tokens is not None:
        from poulpe.tokens import TokensError, read

        try:
            read(settings.tokens)
        except TokensError as exc:
            raise SettingsError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["cron", "check"]:
        from poulpe.cron_check import main as cron_check

        raise SystemExit(cron_check(argv[2:]))
    if argv[:1] == ["cron"]:  # a running poulpe's lines: poulpe/cron_cli.py
        from poulpe.cron_cli import main as cron_cli

        raise SystemExit(cron_cli(argv[1:]))
    if argv[:2] == ["token", "new"]:  # a new token and its line for the tokens file (poulpe/token_cli.py)
        from poulpe.token_cli import main as token_new

        raise SystemExit(token_new(argv[2:]))
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
