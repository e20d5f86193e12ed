"""HTTP jobs (SPEC 4): one shared aiohttp client; redirects are followed here so every hop passes --allow_hosts."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import functools
import json
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import msgspec
from yarl import URL

from poulpe.checks import Limits
from poulpe.errors import BadRequest
from poulpe.job import QUERY_METHODS, Job, Method
from poulpe.outbound import DEFAULT_PORTS, check_url, host_allowed, signature
from poulpe.runners import BODY_CAP, Outcome
from poulpe.runners.time_limits import Limits as TimeLimits
from poulpe.settings import Secret
from poulpe.tracing import outgoing

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Headers the transport owns: a job's headers never replace them (nor any Poulpe-* header).
_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Credentials that must not follow a redirect to another origin (curl and requests drop them too).
_ORIGIN_BOUND = frozenset({"authorization", "cookie", "proxy-authorization"})
# aiohttp adds `Content-Type: application/octet-stream` to a POST, PUT or PATCH that names none: poulpe's body-less
# ones say nothing. Told only for those methods: telling it costs aiohttp a set and a header copy per request.
_NO_DEFAULT_TYPE = ("Content-Type",)
_TYPED_METHODS = frozenset({Method.POST, Method.PUT, Method.PATCH})


def check(method: Method, name: str, params: Any, limits: Limits) -> None:
    """An HTTP job's rules at intake: a URL poulpe may call, params it can send as a query string or a body."""
    check_url(name, "name", limits.allow_hosts)
    if method in QUERY_METHODS:
        if params is not None and not isinstance(params, str | dict):
            raise BadRequest(f"params of a {method} job must be a query string or an object", "params")
        if isinstance(params, dict) and not all(_is_query_value(v) for v in params.values()):
            raise BadRequest("query values must be strings, numbers, booleans or lists of them", "params")
    elif isinstance(params, str):
        try:
            json.loads(params)
        except (ValueError, RecursionError):
            raise BadRequest(f"params of a {method} job must be JSON (the request body)", "params") from None
    elif params is not None and not isinstance(params, dict | list):
        raise BadRequest(f"params of a {method} job must be a JSON object, array or string", "params")


def _is_query_value(value: Any) -> bool:
    scalar = (str, int, float, bool)
    return isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))


def redact(url: str | URL) -> str:
    """The URL without its `user:password@` part, fit for errors and logs."""
    parts = urlsplit(str(url))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class HttpRunner:
    """Runs GET/POST/PUT/PATCH/DELETE jobs; never raises for anything a target or the network does."""

    def __init__(
        self,
        *,
        allow_hosts: tuple[str, ...] = (),
        signing_key: Secret | None = None,
        version: str = "0.1.0",
        pool_size: int = 256,
    ) -> None:
        self.allow_hosts = allow_hosts
        self.version = version
        self.pool_size = pool_size
        self._key = signing_key.reveal().encode() if signing_key else None
        self._session: aiohttp.ClientSession | None = None
        self._limits: TimeLimits | None = None  # the attempts' time limits, on the loop they run in
        self._user_agent = f"poulpe/{version}"

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession belongs to the loop it was made in.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # jobs must not share cookies with each other
                timeout=aiohttp.ClientTimeout(),  # no aiohttp limits: run() bounds the whole attempt
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._limits is not None:
            self._limits.close()
            self._limits = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109 (the Runner protocol)
        start = time.perf_counter()
        try:
            if job.method in QUERY_METHODS:
                url, body = _url(_with_query(job.name, job.params)), b""
            else:
                url, body = _url(job.name), _json_body(job.params)
        except ValueError as exc:  # our own sentences: intake validation lets none of these through
            return Outcome(ok=False, final=True, error=str(exc))
        headers = self._headers(job, attempt, body)
        limit = self._limits_here().start(timeout)  # asyncio.timeout's own steps, one timer for all (time_limits.py)
        try:
            return await self._follow(job.method, url, body, headers, start)
        except asyncio.CancelledError:
            if limit.expired():
                return Outcome(ok=False, error=f"timed out after {timeout:g}s")
            raise
        finally:
            limit.end()

    def _limits_here(self) -> TimeLimits:
        loop = asyncio.get_running_loop()
        limits = self._limits
        if limits is None or limits.loop is not loop:
            limits = self._limits = TimeLimits(loop)
        return limits

    def _headers(self, job: Job, attempt: int, body: bytes) -> dict[str, str]:
        headers = {"User-Agent": self._user_agent}
        if body:
            headers["Content-Type"] = "application/json"
        for name, value in (job.headers or {}).items():
            low = name.lower()
            if low in _OWNED or low.startswith("poulpe-"):
                continue
            _drop(headers, {low})
            headers[name] = value
        headers["Poulpe-Job-Id"] = job.id
        headers["Poulpe-Attempt"] = str(attempt)
        trace = outgoing(job)
        if trace is not None:  # the attempt's W3C trace context (SPEC 10.6) replaces one the job's headers gave
            if job.headers:
                _drop(headers, {"traceparent", "tracestate"})
            headers["traceparent"] = trace[0]
            if trace[1]:
                headers["tracestate"] = trace[1]
        return headers

    async def _follow(self, method: str, url: URL, body: bytes, headers: dict[str, str], start: float) -> Outcome:
        """Up to MAX_REDIRECTS hops, each checked against --allow_hosts before any connection is made."""
        session = self._client()
        for _ in range(MAX_REDIRECTS + 1):
            if url.scheme not in DEFAULT_PORTS or not url.host:
                return Outcome(ok=False, final=True, error=f"{redact(url)} is not an http or https URL")
            if self.allow_hosts and not host_allowed(str(url), self.allow_hosts):
                return Outcome(ok=False, final=True, error=f"host {url.host} is not in --allow_hosts")
            if self._key is not None:
                headers["Poulpe-Signature"] = signature(self._key, body)
            try:
                async with session.request(
                    method,
                    url,
                    data=body or None,
                    headers=headers,
                    allow_redirects=False,
                    skip_auto_headers=_NO_DEFAULT_TYPE if method in _TYPED_METHODS else None,
                ) as resp:
                    location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
                    if not location:
                        return await _outcome(resp, start)
                    target = url.join(URL(location))
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                return Outcome(ok=False, error=_describe(exc, url))
            if resp.status in (301, 302, 303):
                method, body = Method.GET, b""
                _drop(headers, {"content-type"})
            if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
                _drop(headers, _ORIGIN_BOUND)
            url = target
        return Outcome(ok=False, error=f"too many redirects (more than {MAX_REDIRECTS})")


@functools.lru_cache(maxsize=1024)
def _url(text: str) -> URL:
    """The parsed URL; a job's target is most often one of a few: parsed once each (a URL is immutable)."""
    try:
        return URL(text)
    except ValueError:  # yarl's message would repeat the URL, credentials included
        raise ValueError("name is not a valid URL") from None


def _with_query(url: str, params: Any) -> str:
    """SPEC 2.1: GET/DELETE params are a query string or an object, appended to the URL's own query."""
    if params is None:
        return url
    if isinstance(params, str):
        query = params.removeprefix("?")
    elif isinstance(params, Mapping):
        values = ((str(k), item) for k, v in params.items() for item in (v if isinstance(v, list) else [v]))
        # booleans in their JSON spelling, as a JavaScript client would send them
        query = urlencode([(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values if v is not None])
    else:
        raise ValueError("params of a GET or DELETE job must be a query string or an object")
    if not query:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("name is not a valid URL") from None
    return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query, fragment=""))


def _json_body(params: Any) -> bytes:
    """POST/PUT/PATCH params: a JSON string is checked and sent as written; an object or array is encoded."""
    if params is None:
        return b""
    if isinstance(params, str):
        try:
            msgspec.json.decode(params)
        except msgspec.DecodeError:
            raise ValueError("params is not valid JSON, so it cannot be the request body") from None
        return params.encode()
    try:
        return msgspec.json.encode(params)
    except (TypeError, msgspec.EncodeError):
        raise ValueError("params cannot be encoded as JSON") from None


def _drop(headers: dict[str, str], lower_names: Iterable[str]) -> None:
    names = set(lower_names)
    for name in [n for n in headers if n.lower() in names]:
        del headers[name]


async def _outcome(resp: aiohttp.ClientResponse, start: float) -> Outcome:
    body = await resp.content.read(BODY_CAP)
    # the whole body in one read, the usual case: no copy, no second read, no coroutine of its own
    if body and not resp.content.at_eof():
        body, truncated = await _read_rest(resp, body)
        if truncated:
            resp.close()  # drop the connection instead of downloading the rest
    headers: dict[str, str] = {}
    spelled: dict[str, str] = {}  # a repeated header keeps its first spelling; its values are joined
    for name, value in resp.headers.items():
        key = spelled.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    result = {
        "status_code": resp.status,
        "headers": headers,
        "body": body.decode("utf-8", errors="replace"),
        "elapsed_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    if 200 <= resp.status < 300:
        return Outcome(ok=True, result=result)
    retry_after = _retry_after(resp.headers.get("Retry-After")) if resp.status in _RETRY_AFTER_STATUSES else None
    return Outcome(ok=False, result=result, error=f"HTTP {resp.status}", retry_after=retry_after)


async def _read_rest(resp: aiohttp.ClientResponse, first: bytes) -> tuple[bytes, bool]:
    """The body up to BODY_CAP bytes after a `first` read that did not reach its end, and whether more was left
    unread (`.read()` would buffer it all)."""
    data = bytearray(first)
    while len(data) < BODY_CAP:
        chunk = await resp.content.read(BODY_CAP - len(data))
        if not chunk:
            return bytes(data), False
        data += chunk
    return bytes(data), not resp.content.at_eof()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - time.time(), 0.0)


def _describe(exc: BaseException, url: URL) -> str:
    """One sentence naming what went wrong; it names host and port only, never credentials or the query."""
    where = f"{url.host}:{url.port}"
    if isinstance(exc, aiohttp.ClientSSLError):  # verify_message: "self-signed certificate", reason: "WRONG_VERSION..."
        reason = getattr(exc.os_error, "verify_message", None) or getattr(exc.os_error, "reason", None)
        return f"TLS error with {where}: {reason or 'handshake failed'}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"could not resolve host {url.host}"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {where}"
        return f"could not connect to {where}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{where} closed the connection without a complete answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body from {where} was cut off or badly encoded"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{where} sent an invalid HTTP response"
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return f"connection to {where} was reset"
    if isinstance(exc, ValueError):
        return f"invalid URL or redirect for {redact(url)}"
    return f"request to {where} failed ({type(exc).__name__})"
