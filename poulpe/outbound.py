"""The rules every request poulpe sends obeys, for jobs' targets and for callbacks alike: --allow_hosts, a URL
poulpe can call, and the `Poulpe-Signature` header."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from poulpe.errors import BadRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")


def check_url(url: str, field: str, allow_hosts: tuple[str, ...]) -> None:
    """Raise BadRequest naming `field` unless `url` is an http(s) URL poulpe may call under --allow_hosts."""
    fault = _url_fault(url, allow_hosts)
    if fault is not None:
        raise BadRequest(fault.format(field=field), field)


@functools.lru_cache(maxsize=1024)
def _url_fault(url: str, allow_hosts: tuple[str, ...]) -> str | None:
    """What is wrong with `url` (`{field}` standing for the field's name), or None. A batch's jobs mostly call a
    few URLs: each is checked once (the answer only depends on the URL and --allow_hosts)."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # "http://[::1/x": an IPv6 address without its closing bracket
        return "{field} must be an http or https URL"
    if parts.scheme not in ("http", "https") or not hostname:
        return "{field} must be an http or https URL"
    if _URL_BAD_CHARS.search(url):
        return "{field} must not contain spaces or control characters"
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "{field} has an invalid port"
    if allow_hosts and not host_allowed(url, allow_hosts):
        return f"host {_braced(parts.hostname or '')} is not in --allow_hosts"
    return None


def _braced(text: str) -> str:
    """`text` fit for str.format: its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def host_allowed(url: str, allow_hosts: Iterable[str]) -> bool:
    """Whether `url` may be called under --allow_hosts; an empty list allows every host.

    An entry is a host (exact, case-insensitive), `*.example.com` (its subdomains, not the apex), either of them
    optionally with `:port` (then only that port, the scheme's default port counting when the URL has none).
    """
    entries = tuple(allow_hosts)
    if not entries:
        return True
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return False
    for entry in entries:
        want, want_port = _split_entry(entry)
        if want_port is not None and want_port != port:
            continue
        if host == want or (want.startswith("*.") and host.endswith(want[1:])):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest[:1] == ":" and rest[1:].isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host.rstrip("."), int(port)
    return entry.rstrip("."), None


def signature(key: bytes, body: bytes) -> str:
    """`t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the target checks origin and freshness (as Stripe does)."""
    t = int(time.time())
    mac = hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
