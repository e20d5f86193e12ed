"""`poulpe submit | status | dead`: operator commands that talk to a running poulpe over HTTP.

They find poulpe with `--url` (or POULPE_URL, else http://127.0.0.1:$POULPE_PORT, port 8000 by default) and send
POULPE_TOKEN as the bearer token (from the environment only: a flag would show it in `ps`). Output is a readable
table, or the server's JSON with `--json`. The exit status says what happened, for scripts (EXIT_HELP below).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from poulpe.flag_hints import HintingParser
from poulpe.ops_client import (
    FAILED,
    FINAL,
    NOT_FINAL,
    OK,
    REFUSED,
    UNAUTHORIZED,
    UNREACHABLE,
    Client,
    CommandError,
    clean,
    show_job,
    table,
    when,
)

COMMANDS = frozenset({"submit", "status", "dead"})
EXIT_HELP = """exit status:
  0  done (with --wait: the job succeeded)
  1  the job ended dead or cancelled
  2  bad usage, or poulpe refused the request (400, 409, 413, 415)
  3  no such job or dead letter (404)
  4  --wait: the job is not final yet
  5  poulpe cannot be reached or is unavailable (503, 5xx)
  6  missing or wrong token (401): set POULPE_TOKEN
"""


def _job_exit(job: dict[str, Any], waited: bool) -> int:
    status = job.get("status")
    if status in ("dead", "cancelled"):
        return FAILED
    if waited and status not in FINAL:
        return NOT_FINAL
    return OK


# --- commands ----------------------------------------------------------------------------------------------
def submit(client: Client, args: argparse.Namespace) -> int:
    job: Any = {}
    if args.method is None and args.name is None:
        if sys.stdin.isatty():
            raise CommandError("give --method and --name, or the job JSON on stdin", REFUSED)
        try:
            job = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise CommandError(f"stdin is not JSON: {exc}", REFUSED) from None
    flags = {
        "id": args.id,
        "method": args.method,
        "name": args.name,
        "params": args.params,
        "delay": args.delay,
        "at": args.at,
        "cc": args.cc,
        "timeout": args.timeout,
        "callback": args.callback,
        "retry": _retry(args),
        "deadline": args.deadline,
        "unique": _unique(args),
        "debounce": _debounce(args),
        "meta": _json_flag(args.meta, "--meta"),
        "headers": _headers(args.header),
        "wait": args.wait,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    if isinstance(job, dict):
        job.update(given)
    elif given.keys() - {"wait"}:
        raise CommandError("job flags go with one job, not with a batch on stdin", REFUSED)
    status, answer = client.expect("POST", "/task_in_queue", job, timeout=(args.wait or 0) + 30)
    if isinstance(answer, list):
        return _batch(answer, args.json)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif answer.get("duplicate"):
        print(f"{clean(answer['id'])}: already known, {answer['status']} (not submitted again)")
    elif answer.get("debounced"):
        print(f"{clean(answer['id'])}: debounced, runs at {when(answer['run_at'])}")
    elif status == 200 or answer.get("result") == "Timeout":
        print(show_job(answer))
    else:
        print(f"{clean(answer['id'])}: {answer['status']}, runs at {when(answer['run_at'])}")
    return _job_exit(answer, args.wait is not None)


def _retry(args: argparse.Namespace) -> Any:
    retry = _json_flag(args.retry, "--retry")
    if args.max_duration is None:
        return retry
    return {**(retry if isinstance(retry, dict) else {}), "max_duration": args.max_duration}


def _unique(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.unique_for is None:
        if args.unique_key is not None:
            raise CommandError("--unique_key goes with --unique_for SECONDS", REFUSED)
        return None
    return {"for": args.unique_for, **({"key": args.unique_key} if args.unique_key is not None else {})}


def _debounce(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.debounce is None:
        if args.debounce_delay is not None or args.debounce_max_wait is not None:
            raise CommandError("--debounce_delay and --debounce_max_wait go with --debounce KEY", REFUSED)
        return None
    window = {"key": args.debounce, "delay": args.debounce_delay or 0.0}
    return window if args.debounce_max_wait is None else {**window, "max_wait": args.debounce_max_wait}


def _batch(answers: list[Any], raw: bool) -> int:
    if raw:
        print(json.dumps(answers, indent=2))
    else:
        rows = [[a.get("id"), a.get("status") or a.get("result"), a.get("error")] for a in answers]
        print(table(["id", "status", "error"], rows))
    return REFUSED if any(a.get("result") == "Fail" for a in answers) else OK


def _json_flag(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise CommandError(f"{flag} must be JSON", REFUSED) from None


def _headers(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise CommandError(f"--header takes NAME:VALUE, not {pair!r}", REFUSED)
        headers[name.strip()] = value.strip()
    return headers


def status(client: Client, args: argparse.Namespace) -> int:
    job_id = quote(args.id, safe="")
    if args.wait is not None:
        _, job = client.expect("GET", f"/task_resp/{job_id}?timeout={args.wait:g}", timeout=args.wait + 30)
    else:
        _, job = client.expect("GET", f"/jobs/{job_id}")
    print(json.dumps(job, indent=2) if args.json else show_job(job))
    return _job_exit(job, args.wait is not None)


def dead(client: Client, args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.ids or args.all:
            raise CommandError("dead list takes no ids (see --page and --size)", REFUSED)
        return _dead_list(client, args)
    ids = list(args.ids)
    if args.all and args.action != "retry":
        raise CommandError("--all goes with retry only", REFUSED)
    if args.action == "retry" and args.all:
        if ids:
            raise CommandError("give ids or --all, not both", REFUSED)
        ids = _all_dead(client)
    elif not ids:
        raise CommandError(
            f"dead {args.action}: give one or more job ids" + (" or --all" * (args.action == "retry")), REFUSED
        )
    worst = OK
    for job_id in ids:
        path = f"/dead/{quote(job_id, safe='')}" + ("/retry" if args.action == "retry" else "")
        try:
            client.expect("POST" if args.action == "retry" else "DELETE", path)
        except CommandError as exc:
            if exc.code in (UNREACHABLE, UNAUTHORIZED):
                raise
            print(f"{clean(job_id)}: {exc.message}", file=sys.stderr)
            worst = max(worst, exc.code)
            continue
        print(f"{clean(job_id)}: {'queued again' if args.action == 'retry' else 'deleted'}")
    if args.action == "retry" and args.all and not ids:
        print("no dead letters")
    return worst


def _all_dead(client: Client) -> list[str]:
    """Every dead letter's id, read before any is retried (a retry takes its letter out of the listing)."""
    ids: list[str] = []
    page = 1
    while True:
        _, answer = client.expect("GET", f"/dead?{urlencode({'page': page, 'size': 1000})}")
        ids += [item["id"] for item in answer["dead"]]
        if len(ids) >= answer["total"] or not answer["dead"]:
            return ids
        page += 1


def _dead_list(client: Client, args: argparse.Namespace) -> int:
    _, answer = client.expect("GET", f"/dead?{urlencode({'page': args.page, 'size': args.size})}")
    letters = []
    for item in answer["dead"]:
        status, letter = client.call("GET", f"/dead/{quote(item['id'], safe='')}")
        letters.append({**item, **(letter if status == 200 and isinstance(letter, dict) else {})})
    if args.json:
        print(json.dumps({**answer, "dead": letters}, indent=2))
        return OK
    rows = [[d["id"], d["day"], d.get("method"), d.get("name"), d.get("attempts"), d.get("error")] for d in letters]
    print(table(["id", "day", "method", "name", "attempts", "error"], rows))
    print(f"{answer['total']} dead letter{'' if answer['total'] == 1 else 's'} (page {args.page}, {args.size} a page)")
    return OK


def keys(client: Client, args: argparse.Namespace) -> int:
    """Keys' limits and pauses (SPEC 10.1); `pause` and `resume` without a key act on the whole deployment."""
    key = args.key
    if args.action in ("show", "set", "rm") and key is None:
        raise CommandError(f"keys {args.action}: give a key", REFUSED)
    if args.action == "list":
        _, answer = client.expect("GET", f"/keys?{urlencode({'page': args.page, 'size': args.size})}")
        if args.json:
            print(json.dumps(answer, indent=2))
            return OK
        rows = [
            [k["key"], k["waiting"], k["running"], k["parallelism"], k["rate"], k["period"], k["paused"]]
            for k in answer["keys"]
        ]
        print(table(["key", "waiting", "running", "parallelism", "rate", "period", "paused"], rows))
        print(f"{answer['total']} key{'' if answer['total'] == 1 else 's'} (page {args.page}, {args.size} a page)")
        return OK
    if args.action in ("pause", "resume") and key is None:
        _, answer = client.expect("POST", f"/{args.action}")
        print(json.dumps(answer) if args.json else f"poulpe is {'paused' if answer['paused'] else 'running'}")
        return OK
    path = f"/keys/{quote(key, safe='/')}"
    if args.action == "show":
        _, answer = client.expect("GET", path)
    elif args.action == "rm":
        _, answer = client.expect("DELETE", path)
    else:
        body: dict[str, Any] = {"paused": args.action == "pause"} if args.action in ("pause", "resume") else {}
        for name in ("parallelism", "rate", "period"):
            value = getattr(args, name, None)
            if value is not None:
                body[name] = None if value == "none" else _number(value, name)
        if args.action == "set" and not body:
            raise CommandError("keys set: give --parallelism, --rate or --period", REFUSED)
        _, answer = client.expect("PUT", path, body)
    print(json.dumps(answer, indent=2) if args.json else _show_key(answer))
    return OK


def _number(text: str, name: str) -> float | int:
    try:
        return int(text) if name == "parallelism" else float(text)
    except ValueError:
        raise CommandError(f"--{name} must be a number or none, not {text!r}", REFUSED) from None


def _show_key(state: dict[str, Any]) -> str:
    return "\n".join(f"{name:>18}  {clean(value)}" for name, value in state.items())


# --- parsing -----------------------------------------------------------------------------------------------
def default_url() -> str:
    return os.environ.get("POULPE_URL") or f"http://127.0.0.1:{os.environ.get('POULPE_PORT') or 8000}"


def build_parser() -> argparse.ArgumentParser:
    common = HintingParser(add_help=False)
    common.add_argument("--url", default=default_url(), help="poulpe's address (default: POULPE_URL, or local)")
    common.add_argument("--json", action="store_true", help="print poulpe's JSON answer as is")
    parser = HintingParser(
        prog="poulpe",
        description="Operator commands for a running poulpe. The token comes from POULPE_TOKEN.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser(
        "submit",
        parents=[common],
        help="submit a job from flags, or its JSON on stdin",
        description="Submit a job from flags, or its JSON (one job or a batch) on stdin; flags override stdin.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("-m", "--method", help="GET POST PUT PATCH DELETE EXEC MAIL_TO QUEUE")
    sub.add_argument("-n", "--name", help="URL, program, recipient or task type")
    sub.add_argument("-p", "--params", help="query string, JSON body, program arguments or mail JSON")
    sub.add_argument("--id")
    sub.add_argument("--delay", type=float, help="seconds from now")
    sub.add_argument("--at", help="unix seconds or ISO-8601 time with offset")
    sub.add_argument("--cc", help='workers that may run it, e.g. "1 3"')
    sub.add_argument("--timeout", type=float, help="limit of one attempt, seconds")
    sub.add_argument("--retry", help='retry policy as JSON, e.g. \'{"max": 5, "backoff": "exponential"}\'')
    sub.add_argument("--header", action="append", metavar="NAME:VALUE", help="extra request header (repeatable)")
    sub.add_argument("--callback", help="URL that gets the result once the job is final")
    sub.add_argument("--meta", help="JSON object kept with the job")
    sub.add_argument("--wait", type=_seconds, nargs="?", const=30.0, help="wait up to this many seconds (30)")
    sub.add_argument("--deadline", help="not started by then (unix seconds or ISO-8601 with offset), it ends dead")
    sub.add_argument("--max_duration", "--max-duration", type=float, help="no retry after this many seconds")
    sub.add_argument("--unique_for", "--unique-for", type=float, help="no other job with its unique key for S s")
    sub.add_argument("--unique_key", "--unique-key", help="the unique key (default: method, name and params)")
    sub.add_argument("--debounce", metavar="KEY", help="replace the job waiting under this debounce key")
    sub.add_argument("--debounce_delay", "--debounce-delay", type=float, help="run S s after the last submission")
    sub.add_argument("--debounce_max_wait", "--debounce-max-wait", type=float, help="at most S s after the first")
    sub.set_defaults(run=submit)
    sub = commands.add_parser(
        "status",
        parents=[common],
        help="a job's state, attempts and result",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("id")
    sub.add_argument("--wait", type=_seconds, nargs="?", const=30.0, help="wait up to this many seconds (30)")
    sub.set_defaults(run=status)
    sub = commands.add_parser(
        "dead",
        parents=[common],
        help="dead letters: list, retry ID|--all, rm ID",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("action", choices=["list", "retry", "rm"])
    sub.add_argument("ids", nargs="*", metavar="ID")
    sub.add_argument("--all", action="store_true", help="retry: every dead letter")
    sub.add_argument("--page", type=int, default=1)
    sub.add_argument("--size", type=int, default=50)
    sub.set_defaults(run=dead)
    sub = commands.add_parser(
        "keys",
        parents=[common],
        help="keys: list, show KEY, set KEY --parallelism N --rate N --period S, pause|resume [KEY], rm KEY",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("action", nargs="?", default="list", choices=["list", "show", "set", "pause", "resume", "rm"])
    sub.add_argument("key", nargs="?", help="the key (pause and resume without one: the whole deployment)")
    sub.add_argument("--parallelism", help="attempts running at once at most (none: remove)")
    sub.add_argument("--rate", help="attempt starts per --period at most (none: remove)")
    sub.add_argument("--period", help="seconds of --rate (default 1)")
    sub.add_argument("--page", type=int, default=1)
    sub.add_argument("--size", type=int, default=50)
    sub.set_defaults(run=keys)
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 300:
        raise argparse.ArgumentTypeError("between 0 and 300 seconds")
    return value


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    client = Client(args.url, os.environ.get("POULPE_TOKEN") or None)
    try:
        code: int = args.run(client, args)
    except CommandError as exc:
        print(f"poulpe {args.command}: {exc.message}", file=sys.stderr)
        return exc.code
    return code
