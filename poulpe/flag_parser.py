"""The server's flags as argparse reads them, built from flags.py's table: `poulpe` and `poulpe cron check` both
parse with it, so the check sees the flags (and POULPE_* variables) the server would start with."""

from __future__ import annotations

import argparse
import os
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
