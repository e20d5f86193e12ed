"""A tokens file for a test: each entry gets a fresh token, as `poulpe token new` makes one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poulpe.tokens import new_entry


def write_tokens(path: Path, **entries: dict[str, Any]) -> dict[str, str]:
    """`write_tokens(path, ci={"scopes": ["submit"], "tenant": "pay"})` → {"ci": "<its token>"}; the file holds only
    the tokens' digests."""
    tokens, tables = {}, []
    for name, fields in entries.items():
        fields = dict(fields)
        token, table = new_entry(name, fields.pop("scopes"), **fields)
        tokens[name] = token
        tables.append(table)
    path.write_text("\n".join(tables))
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
