"""`poulpe token new --name ci --scopes submit,read [--tenant pay] [--rate 10] [--max_pending 500]`.

Prints the new token once (poulpe keeps only its SHA-256) and the `[[tokens]]` table to add to the `--tokens`
file; the running poulpe takes it on SIGHUP or as soon as the file changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from poulpe.tokens import TokensError, new_entry


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="poulpe token new", description=__doc__.split("\n\n")[1])
    parser.add_argument("--name", required=True, help="the token's name, shown in logs and errors")
    parser.add_argument("--scopes", required=True, help="comma-separated: submit, read, admin")
    parser.add_argument("--tenant", help="the tenant whose jobs alone the token sees")
    parser.add_argument("--rate", type=float, help="submissions per second")
    parser.add_argument("--max_pending", "--max-pending", type=int, help="the tenant's unfinished jobs, at most")
    args = parser.parse_args(argv)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        token, entry = new_entry(args.name, scopes, tenant=args.tenant, rate=args.rate, max_pending=args.max_pending)
    except TokensError as exc:
        print(f"poulpe: {str(exc).replace('tokens file: entry 1', 'token')}", file=sys.stderr)
        return 2
    print(f"token (shown once, poulpe keeps only its SHA-256): {token}")
    print("add to the --tokens file:")
    print()
    print(entry, end="")
    return 0
