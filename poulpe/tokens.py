"""Bearer tokens with scopes (SPEC 10.7): the `--tokens` TOML file, the `--token` admin token, and their lookup.

The file holds the sha256 of each token, never the token: a token is looked up by its digest (a dict, so 1,000
entries cost what one does), then compared with `hmac.compare_digest`. Timing can tell nothing of a token from a
lookup by digest (the digest of a guess says nothing of a stored one). No token, digest or tenant secret goes into
a `repr`, a log line or an error: errors name the entry by its place and its `name`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from poulpe.scopes import SCOPES

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
TENANT = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")  # no `:` (a tenant's ids are `<tenant>:<id>`), no glob characters
DIGEST = re.compile(r"[0-9a-f]{64}\Z")
RESERVED_TENANTS = frozenset({"cron"})  # cron's fires have ids `cron:...`
_FIELDS = {"name", "sha256", "scopes", "tenant", "rate", "max_pending"}


class TokensError(ValueError):
    """The tokens file cannot be used; the message names the entry (never its digest)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a token's name, scopes, tenant and quotas. `digest` is never shown (repr=False)."""

    name: str
    scopes: frozenset[str]
    tenant: str | None = None
    rate: float | None = None
    max_pending: int | None = None
    digest: str = dataclasses.field(default="", repr=False)


def digest_of(token: bytes | str) -> str:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


class TokenTable:
    """The tokens in force: the file's entries and the `--token` admin token."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self._by_digest = {p.digest: p for p in principals}

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, given: bytes) -> Principal | None:
        """The token's principal, or None (a wrong, removed or empty token)."""
        if not given:
            return None
        computed = digest_of(given)
        found = self._by_digest.get(computed)
        if found is None or not hmac.compare_digest(found.digest, computed):
            return None
        return found

    def still(self, principal: Principal) -> bool:
        """Whether this token is still in force, unchanged (an open WebSocket asks at each message)."""
        return self._by_digest.get(principal.digest) == principal


def admin_token(token: str) -> Principal:
    return Principal("token", frozenset({"admin"}), digest=digest_of(token))


def _entry(at: int, raw: Any) -> Principal:
    where = f"tokens file: entry {at}"
    if not isinstance(raw, dict):
        raise TokensError(f"{where} is not a table")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise TokensError(f"{where}: name must be 1-64 of A-Z a-z 0-9 . _ -")
    where = f"tokens file: entry {at} ({name})"
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise TokensError(f"{where}: unknown field {unknown[0]!r}")
    digest = raw.get("sha256")
    if not isinstance(digest, str) or not DIGEST.match(digest.lower()):
        raise TokensError(f"{where}: sha256 must be the 64 hex digits of the token's SHA-256 (poulpe token new)")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        raise TokensError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
    tenant = raw.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not TENANT.match(tenant) or tenant in RESERVED_TENANTS):
        raise TokensError(f"{where}: tenant must be 1-32 of A-Z a-z 0-9 _ - (and not {', '.join(RESERVED_TENANTS)})")
    rate = raw.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1e6):
        raise TokensError(f"{where}: rate must be a number of submissions per second, > 0")
    pending = raw.get("max_pending")
    if pending is not None:
        if isinstance(pending, bool) or not isinstance(pending, int) or pending < 1:
            raise TokensError(f"{where}: max_pending must be an integer >= 1")
        if tenant is None:
            raise TokensError(f"{where}: max_pending counts a tenant's unfinished jobs: give the token a tenant")
    return Principal(
        name,
        frozenset(scopes),
        tenant,
        float(rate) if rate is not None else None,
        pending,
        digest=digest.lower(),
    )


def parse(text: str) -> list[Principal]:
    """The entries of a tokens file (TOML, one `[[tokens]]` table per token); TokensError naming the bad one."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TokensError(f"tokens file: not TOML: {exc}") from None
    extra = sorted(set(document) - {"tokens"})
    if extra:
        raise TokensError(f"tokens file: unknown table {extra[0]!r} (one [[tokens]] table per token)")
    entries = document.get("tokens", [])
    if not isinstance(entries, list):
        raise TokensError("tokens file: tokens must be [[tokens]] tables")
    principals = [_entry(at, raw) for at, raw in enumerate(entries, 1)]
    seen: dict[str, str] = {}
    for p in principals:
        if p.name in seen.values():
            raise TokensError(f"tokens file: the name {p.name} is given twice")
        if p.digest in seen:
            raise TokensError(f"tokens file: {p.name} has the same token as {seen[p.digest]}")
        seen[p.digest] = p.name
    return principals


def read(path: Path, admin: str | None = None) -> TokenTable:
    """The table of a tokens file (and the `--token` admin token): TokensError when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensError(f"tokens file {path}: cannot be read: {exc.__class__.__name__}") from None
    principals = parse(text)
    if admin:
        principals.append(admin_token(admin))
    return TokenTable(principals)


def new_entry(
    name: str,
    scopes: list[str],
    *,
    tenant: str | None = None,
    rate: float | None = None,
    max_pending: int | None = None,
) -> tuple[str, str]:
    """A new random token and the `[[tokens]]` table to add to the file for it (checked as the file would be)."""
    token = "pt_" + secrets.token_urlsafe(32)
    fields: dict[str, Any] = {"name": name, "sha256": digest_of(token), "scopes": scopes}
    for key, value in (("tenant", tenant), ("rate", rate), ("max_pending", max_pending)):
        if value is not None:
            fields[key] = value
    _entry(1, fields)
    lines = ["[[tokens]]"]
    for key, value in fields.items():
        shown = "[" + ", ".join(f'"{s}"' for s in value) + "]" if isinstance(value, list) else value
        lines.append(f'{key} = "{shown}"' if isinstance(value, str) else f"{key} = {shown}")
    return token, "\n".join(lines) + "\n"
