"""`poulpe cron check FILE [flags]`: the verdict `poulpe --cron FILE [flags]` gives at start, and the next fires.

The check takes the server's flags (and POULPE_* variables) through the server's own parser, and asks the same
function as the server's start-up: a file the check passes is a file the server starts with.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from poulpe.cron import CronError, CronLine, report
from poulpe.flag_parser import build_parser, settings_of
from poulpe.settings import Settings, SettingsError


def verdict(settings: Settings, path: Path) -> list[CronLine]:
    """The file's lines as poulpe running with `settings` takes them; raises CronError naming the first bad line
    (a bad time field, an `ftp://` URL, an EXEC line without --exec_dir, a MAIL_TO line without --smtp_server)."""
    from poulpe.crontab import read_checked
    from poulpe.service import limits_for

    return read_checked(path, limits_for(settings))


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    parser.prog = "poulpe cron check"
    parser.description = (
        "Check a cron file as `poulpe --cron FILE` does at start, with the same flags (--exec_dir, --smtp_server,"
        " --allow_hosts, --timezone, ... and their POULPE_* variables), and show each line's next fire times."
    )
    parser.epilog = None
    parser.add_argument("file", type=Path, nargs="?", help="the cron file (default: --cron, or POULPE_CRON)")
    args = vars(parser.parse_args(argv))
    file: Path | None = args.pop("file")
    try:
        settings = settings_of(args)
        path = file or settings.cron
        if path is None:
            raise SettingsError("name the cron file: poulpe cron check FILE")
        lines = verdict(settings, path)
        print(report(path, lines, tz=settings.timezone), end="")
    except (SettingsError, CronError) as exc:
        print(f"poulpe: {exc}", file=sys.stderr)
        return 2
    return 0
