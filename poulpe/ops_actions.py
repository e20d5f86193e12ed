"""`poulpe dead retry|rm` with filters (`--label team:pay --since 2026-12-01`): one bulk action (SPEC 10.4), followed
until it finishes."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from poulpe.ops_client import FAILED, OK, REFUSED, Client, CommandError, clean

FILTER_FLAGS = ("label", "key", "name_prefix", "since", "until", "error_contains")


def add_filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", action="append", default=[], help="k:v (repeatable): dead jobs with every label")
    parser.add_argument("--key", help="dead jobs of this key")
    parser.add_argument("--name_prefix", "--name-prefix", help="dead jobs whose name starts so")
    parser.add_argument("--since", type=moment, help="died at or after: unix seconds, YYYY-MM-DD (UTC) or ISO-8601")
    parser.add_argument("--until", type=moment, help="died before (same forms)")
    parser.add_argument("--error_contains", "--error-contains", help="dead jobs whose last error holds this text")


def moment(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not unix seconds, YYYY-MM-DD or ISO-8601") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def filtered(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) for name in FILTER_FLAGS)


def dead_action(client: Client, args: argparse.Namespace) -> int:
    """Retry (or delete) every dead job the filters match, in one action; progress is printed as it goes."""
    if args.ids or args.all:
        raise CommandError("give ids, --all or filters, not both", REFUSED)
    narrow: dict[str, Any] = {name: getattr(args, name) for name in FILTER_FLAGS if getattr(args, name)}
    kind = "retry" if args.action == "retry" else "delete"
    _, started = client.expect("POST", "/actions", {"action": kind, "filter": {**narrow, "status": "dead"}})
    print(f"action {clean(started['id'])}: {kind} of {started['matched']} dead jobs")
    shown = -1
    while True:
        _, state = client.expect("GET", f"/actions/{started['id']}")
        if state["done"] != shown:
            shown = state["done"]
            print(f"{state['done']}/{state['total']} done, {state['errors']} errors", file=sys.stderr)
        if state["finished"]:
            if state["errors"]:
                print(f"last error: {clean(state.get('last_error'))}", file=sys.stderr)
            return FAILED if state["errors"] else OK
        time.sleep(0.5)
