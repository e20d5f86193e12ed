"""MAIL_TO jobs (SPEC 2.2, 4): one SMTP connection per mail, with aiosmtplib.

A 5xx answer is final (a retry cannot fix a refused address or a wrong password); a 4xx answer, a network
error, a TLS failure or the timeout is a failed attempt that is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import json
import os
import re
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse

from poulpe.checks import Limits
from poulpe.errors import BadRequest
from poulpe.job import Job, Method
from poulpe.runners import Outcome
from poulpe.settings import Secret

_ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")


def check(method: Method, name: str, params: Any, limits: Limits) -> None:
    """A MAIL_TO job's rules at intake: mail is on (--smtp_server) and its params are a mail (`check_mail`)."""
    if not limits.mail_enabled:
        raise BadRequest("MAIL_TO is disabled: poulpe runs without --smtp_server", "method")
    check_mail(name, params)


def check_mail(name: str, params: Any) -> dict[str, Any]:
    """The MAIL_TO params of SPEC 2.2 as an object, every address checked."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except (ValueError, RecursionError):
            raise BadRequest("params of a MAIL_TO job must be a JSON object", "params") from None
    if not isinstance(params, dict):
        raise BadRequest("params of a MAIL_TO job must be an object", "params")
    allowed = {"from_addr", "to_addr", "title", "body", "html", "cc", "bcc", "reply_to"}
    for key, value in params.items():
        if key not in allowed:
            raise BadRequest(f"unknown mail field {key!r}", f"params.{key}")
        if not isinstance(value, str):
            raise BadRequest(f"{key} must be a string", f"params.{key}")
    for key in ("from_addr", "title", "body"):
        if key not in params:
            raise BadRequest(f"{key} is required for MAIL_TO", f"params.{key}")
    if any(c in params["title"] for c in "\r\n\0") or len(params["title"]) > 998:
        raise BadRequest("title must be one line of at most 998 characters", "params.title")
    _check_addresses(params.get("to_addr", name), "params.to_addr" if "to_addr" in params else "name")
    for key in ("from_addr", "cc", "bcc", "reply_to"):
        if key in params:
            _check_addresses(params[key], f"params.{key}", single=key == "from_addr")
    return params


def _check_addresses(value: str, field: str, *, single: bool = False) -> None:
    parts = [p.strip() for p in value.split(",")]
    if (single and len(parts) != 1) or not parts or len(parts) > 100:
        raise BadRequest(f"{field} must hold {'one address' if single else '1 to 100 addresses'}", field)
    for part in parts:
        address = parseaddr(part)[1]
        if not address or not _ADDRESS_RE.fullmatch(address) or any(c in part for c in "\r\n\0") or _malformed(part):
            raise BadRequest(f"{field}: {part[:100]!r} is not an email address", field)


def _malformed(part: str) -> bool:
    """What the mail header parser finds wrong (`Ann <a@x.org> junk`), or an address a plain SMTP server refuses
    (non-ASCII needs SMTPUTF8; a display name may be any text)."""
    if not parseaddr(part)[1].isascii():
        return True
    header = email.policy.default.header_factory("to", part)
    return bool(header.defects) or len(header.addresses) != 1


class MailRunner:
    """Sends MAIL_TO jobs through one SMTP server; never raises for anything the server or the network does.

    The password is revealed only to aiosmtplib; no error this runner writes ever contains it.
    """

    def __init__(
        self,
        *,
        server: str,
        port: int = 25,
        user: str | None = None,
        password: Secret | None = None,
        starttls: bool = False,
        tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        sender_host: str | None = None,
    ) -> None:
        if starttls and tls:
            raise ValueError("--starttls and --smtp_tls exclude each other: choose one")
        self.server = server
        self.port = port
        self.user = user
        self.starttls = starttls
        self.tls = tls
        self.tls_context = tls_context
        self.sender_host = sender_host
        self._password = password

    async def close(self) -> None:
        """Nothing to release: each mail opens and closes its own connection."""

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109 (the Runner protocol)
        try:
            params = check_mail(job.name, job.params)
            message, sender, recipients = build_message(job, params, sender_host=self.sender_host)
        except BadRequest as exc:
            return Outcome(ok=False, final=True, error=exc.message)
        except ValueError as exc:  # a header email.message refuses (a title with a line break)
            return Outcome(ok=False, final=True, error=f"cannot build the mail: {exc}")
        client = aiosmtplib.SMTP(
            hostname=self.server,
            port=self.port,
            use_tls=self.tls,
            start_tls=self.starttls,  # no opportunistic upgrade: TLS is what the flags say, nothing implicit
            tls_context=self.tls_context,
            local_hostname=self.sender_host,
            timeout=timeout,
        )
        # Not `async with client`: its exit sends QUIT even when cancelled, which could double the time limit.
        transport: asyncio.BaseTransport | None = None
        sent: tuple[dict[str, SMTPResponse], str] | None = None
        try:
            async with asyncio.timeout(timeout):
                await client.connect()  # TCP, then TLS or STARTTLS
                transport = client.transport
                if self.user is not None:
                    await client.login(self.user, self._password.reveal() if self._password else "")
                sent = await client.send_message(message, sender=sender, recipients=recipients)
                with contextlib.suppress(aiosmtplib.SMTPException):  # the mail is accepted: a failed goodbye is fine
                    await client.quit()
        except TimeoutError:  # aiosmtplib's own timeouts are TimeoutErrors too
            if sent is None:  # past DATA, only the QUIT timed out: the mail is accepted, retrying would send it twice
                return Outcome(ok=False, error=f"timed out after {timeout:g}s talking to {self._where}")
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            return _failed(exc, self._where)
        finally:
            client.close()
            # Drop the socket now, as smtplib does after QUIT, rather than wait for the TLS close_notify exchange
            # to finish in the background: the attempt leaves nothing behind.
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        refused, reply = sent
        result: dict[str, Any] = {"smtp_code": 250, "smtp_message": _line(reply), "recipients": recipients}
        if refused:
            result["refused"] = {addr: f"{answer.code} {_line(answer.message)}" for addr, answer in refused.items()}
        return Outcome(ok=True, result=result)

    @property
    def _where(self) -> str:
        return f"{self.server}:{self.port}"


def build_message(
    job: Job, params: dict[str, Any], *, sender_host: str | None = None
) -> tuple[EmailMessage, str, list[str]]:
    """The mail of a job's checked params (`check_mail`), its envelope sender and its envelope recipients.

    Bcc addresses are envelope recipients only: no header names them. Message-ID is the same for every attempt
    of one job, so a mail sent twice (an answer lost after DATA) can be recognised as one by the receiver.
    """
    to = _split(params.get("to_addr", job.name))
    cc = _split(params.get("cc", ""))
    bcc = _split(params.get("bcc", ""))
    sender = parseaddr(params["from_addr"])[1]
    message = EmailMessage()
    message["From"] = params["from_addr"]
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if "reply_to" in params:
        message["Reply-To"] = params["reply_to"]
    message["Subject"] = params["title"]
    message["Date"] = format_datetime(datetime.now(UTC))
    digest = hashlib.sha256(f"{job.id}\0{job.created_at!r}".encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}.poulpe@{sender_host or sender.rpartition('@')[2]}>"
    message["X-Poulpe-Job-Id"] = job.id
    message.set_content(params["body"])
    if "html" in params:
        message.add_alternative(params["html"], subtype="html")
    recipients: list[str] = []
    seen: set[str] = set()
    for part in to + cc + bcc:
        address = parseaddr(part)[1]
        if address.lower() not in seen:
            seen.add(address.lower())
            recipients.append(address)
    return message, sender, recipients


def _split(value: str) -> list[str]:
    """Comma-separated addresses, as `check_mail` reads them."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _failed(exc: Exception, where: str) -> Outcome:
    """The outcome of an attempt that raised: final for a 5xx answer or a mail that cannot be sent, else retried."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _all_refused(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Outcome(ok=False, final=500 <= exc.code < 600, error=f"SMTP {exc.code} {_line(exc.message)}")
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPException) else exc  # aiosmtplib wraps socket errors
    if isinstance(cause, ssl.SSLError):  # before ValueError: a certificate that fails verification is both
        reason = getattr(cause, "verify_message", None) or cause.reason or type(cause).__name__
        return Outcome(ok=False, error=f"TLS error with {where}: {reason}")
    if isinstance(exc, ValueError):  # an address aiosmtplib will not put on the wire
        return Outcome(ok=False, final=True, error=f"cannot send the mail: {exc}")
    if isinstance(cause, OSError):
        reason = os.strerror(cause.errno) if cause.errno else type(cause).__name__  # "Connection refused"
        if isinstance(exc, aiosmtplib.SMTPConnectError):
            return Outcome(ok=False, error=f"could not connect to {where}: {reason}")
        return Outcome(ok=False, error=f"connection to {where} lost: {reason}")
    message = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
    return Outcome(ok=False, error=f"SMTP error with {where}: {_line(message)}")  # a lost connection, no STARTTLS


def _all_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Outcome:
    """Every recipient refused: final unless one refusal was temporary (4xx), which a retry may get past."""
    final = all(500 <= r.code < 600 for r in exc.recipients)
    shown = exc.recipients[0] if final else next(r for r in exc.recipients if not 500 <= r.code < 600)
    addresses = ", ".join(r.recipient for r in exc.recipients)
    return Outcome(ok=False, final=final, error=f"SMTP {shown.code} {_line(shown.message)} (refused: {addresses})")


def _line(text: str) -> str:
    """A server answer on one line (multi-line SMTP replies are joined), at most 500 characters."""
    return " ".join(text.split())[:500]
