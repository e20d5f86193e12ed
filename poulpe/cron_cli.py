"""`poulpe cron list | run LINE | pause LINE | resume LINE | backfill LINE --from T --to T`: a running poulpe's cron
lines (SPEC 10.5), over HTTP like the other operator commands (ops_cli.py: --url, POULPE_TOKEN, --json, exit status).

LINE is a line's id (its fingerprint, as `GET /cron` and `poulpe cron check` show it) or its line number in the file.
`poulpe cron check FILE` checks a file without a running poulpe (cron_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from poulpe.flag_hints import HintingParser
from poulpe.ops_cli import EXIT_HELP, default_url
from poulpe.ops_client import NOT_FOUND, OK, REFUSED, Client, CommandError, clean, table

FINGERPRINT_LEN = 12


def _line_id(client: Client, given: str) -> str:
    """A line number becomes the id of the line that has it now."""
    if not (given.isdigit() and len(given) < FINGERPRINT_LEN):
        return given
    _, answer = client.expect("GET", "/cron")
    for line in answer["lines"]:
        if line["line"] == int(given):
            found: str = line["id"]
            return found
    raise CommandError(f"no job line at line {given} of {answer['file'] or 'the cron file'}", NOT_FOUND)


def _time(text: str | None, flag: str) -> float | str:
    if text is None:
        raise CommandError(f"backfill needs {flag} (unix seconds or ISO-8601 with an offset)", REFUSED)
    try:
        return float(text)
    except ValueError:
        return text


def _stamp(seconds: float | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cron(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        _, answer = client.expect("GET", "/cron")
        if args.json:
            print(json.dumps(answer, indent=2))
            return OK
        rows = [
            [
                line["id"],
                line["line"],
                "paused" if line["paused"] else "running",
                line["expr"],
                line["timezone"],
                line["method"],
                line["name"],
                _stamp(line["next"][0] if line["next"] else None),
                f"{line['last']['id']} {line['last']['status']}" if line["last"] else "-",
            ]
            for line in answer["lines"]
        ]
        print(table(["id", "line", "state", "time fields", "zone", "method", "name", "next (UTC)", "last"], rows))
        return OK
    if args.line is None:
        raise CommandError(f"cron {args.action}: give a line id or line number", REFUSED)
    line_id = _line_id(client, args.line)
    if args.action == "run":
        _, answer = client.expect("POST", f"/cron/{line_id}/run")
        text = f"{clean(answer['id'])}: {answer['status']}"
    elif args.action in ("pause", "resume"):
        _, answer = client.expect("PUT", f"/cron/{line_id}", {"paused": args.action == "pause"})
        text = f"cron line {answer['line']} ({line_id}): {'paused' if answer['paused'] else 'running'}"
    else:
        body = {"from": _time(args.start, "--from"), "to": _time(args.end, "--to")}
        _, answer = client.expect("POST", f"/cron/{line_id}/backfill", body)
        before = answer["fires"] - answer["created"]
        text = f"{answer['fires']} fire times, {answer['created']} new jobs ({before} made before)"
    print(json.dumps(answer, indent=2) if args.json else text)
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = HintingParser(
        prog="poulpe cron",
        description="A running poulpe's cron lines: list, run now, pause, resume, backfill. "
        "LINE is a line's id or its line number. The token comes from POULPE_TOKEN. "
        "(`poulpe cron check FILE` checks a file.)",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["list", "run", "pause", "resume", "backfill"])
    parser.add_argument("line", nargs="?", metavar="LINE", help="a line's id or line number")
    parser.add_argument("--from", dest="start", help="backfill: first time (unix seconds or ISO-8601 with offset)")
    parser.add_argument("--to", dest="end", help="backfill: last time, included (at most now)")
    parser.add_argument("--url", default=default_url(), help="poulpe's address (default: POULPE_URL, or local)")
    parser.add_argument("--json", action="store_true", help="print poulpe's JSON answer as is")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.url, os.environ.get("POULPE_TOKEN") or None)
    try:
        return cron(client, args)
    except CommandError as exc:
        print(f"poulpe cron {args.action}: {exc.message}", file=sys.stderr)
        return exc.code
