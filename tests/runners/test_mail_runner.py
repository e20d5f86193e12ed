"""MailRunner against a real SMTP server (tests/smtp_server.py, aiosmtpd): what a mailbox receives and what poulpe
records for each SMTP answer. No mocks: every test talks SMTP over a loopback socket."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from poulpe.job import Job, Method
from poulpe.runners import Outcome
from poulpe.runners.mail import MailRunner
from poulpe.settings import Secret
from tests.smtp_server import Certificate, SmtpServer, closed_port, make_certificate, silent_server

USER, PASSWORD = "robot", "pa55-Wörd-never-shown"
PARAMS = {"from_addr": "Poulpe <robot@example.com>", "title": "Hello", "body": "Plain body.\n"}

Send = Callable[..., Any]


# --- servers, one per kind for the whole module; emptied before each test ------------------------------------
@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("untrusted"))


def _serve(**options: Any) -> Iterator[SmtpServer]:
    with SmtpServer(**options) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server() -> Iterator[SmtpServer]:
    yield from _serve()


@pytest.fixture(scope="module")
def starttls_server(cert: Certificate) -> Iterator[SmtpServer]:
    yield from _serve(auth=(USER, PASSWORD), starttls=cert, require_starttls=True)


@pytest.fixture(scope="module")
def implicit_server(cert: Certificate) -> Iterator[SmtpServer]:
    yield from _serve(auth=(USER, PASSWORD), implicit_tls=cert)


@pytest.fixture
def smtp(plain_server: SmtpServer) -> SmtpServer:
    plain_server.reset()
    return plain_server


@pytest.fixture
def smtp_tls(starttls_server: SmtpServer) -> SmtpServer:
    starttls_server.reset()
    return starttls_server


# --- every outcome of this file is checked for the password ---------------------------------------------------
@pytest.fixture
def outcomes() -> list[Outcome]:
    return []


@pytest.fixture(autouse=True)
def _password_never_shown(outcomes: list[Outcome], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for outcome in outcomes:
        assert PASSWORD not in repr(outcome)
        assert PASSWORD not in json.dumps(outcome.result, ensure_ascii=False)
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]  # "mail.log" is aiosmtpd, the server side
    assert not any(PASSWORD in r.getMessage() for r in ours)


@pytest.fixture
async def send(outcomes: list[Outcome]) -> AsyncIterator[Send]:
    """`await send(server_port, params, name=..., seconds=<the attempt timeout>, **runner options)` → Outcome."""
    runners: list[MailRunner] = []

    async def go(
        port: int, params: Any, *, name: str = "ann@example.com", seconds: float = 10, **options: Any
    ) -> Outcome:
        job = Job(id=options.pop("id", "mail-1"), method=Method.MAIL_TO, name=name, params=params, created_at=1.5)
        runner = MailRunner(server="127.0.0.1", port=port, **options)
        runners.append(runner)
        outcome = await runner.run(job, 1, seconds)
        outcomes.append(outcome)
        return outcome

    yield go
    for runner in runners:
        await runner.close()


def only(server: SmtpServer) -> EmailMessage:
    received = server.received
    assert len(received) == 1, received
    return received[0].message


# --- what arrives -----------------------------------------------------------------------------------------
async def test_subject_body_from_to_cc_reply_to_and_html_arrive(send: Send, smtp: SmtpServer) -> None:
    params = {
        **PARAMS,
        "to_addr": "ann@example.com, Bob Brown <bob@example.com>",
        "cc": "cid@example.com",
        "reply_to": "desk@example.com",
        "title": "Résumé ✓ ready",
        "body": "Hello Ann,\nyour résumé is ready.\n",
        "html": "<p>Hello Ann, your <b>résumé</b> is ready.</p>",
    }
    outcome = await send(smtp.port, params)
    assert outcome.ok, outcome.error
    recipients = ["ann@example.com", "bob@example.com", "cid@example.com"]
    assert outcome.result["smtp_code"] == 250
    assert "queued as poulpe-test" in outcome.result["smtp_message"]
    assert outcome.result["recipients"] == recipients
    assert "refused" not in outcome.result

    received = smtp.received[0]
    assert received.mail_from == "robot@example.com"
    assert received.rcpt_tos == recipients
    mail = received.message
    assert mail["Subject"] == "Résumé ✓ ready"
    assert mail["From"] == "Poulpe <robot@example.com>"
    assert mail["To"] == "ann@example.com, Bob Brown <bob@example.com>"
    assert mail["Cc"] == "cid@example.com"
    assert mail["Reply-To"] == "desk@example.com"
    assert mail["X-Poulpe-Job-Id"] == "mail-1"
    assert mail["Message-ID"].endswith("@example.com>")
    assert mail["Date"] is not None and abs(mail["Date"].datetime.timestamp() - time.time()) < 60
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Hello Ann,\nyour résumé is ready.\n"
    assert parts[1].get_content().strip() == "<p>Hello Ann, your <b>résumé</b> is ready.</p>"


async def test_to_defaults_to_the_name_and_params_may_be_a_json_string(send: Send, smtp: SmtpServer) -> None:
    outcome = await send(smtp.port, json.dumps(PARAMS), name="zoe@example.org")
    assert outcome.ok, outcome.error
    assert outcome.result["recipients"] == ["zoe@example.org"]
    mail = only(smtp)
    assert mail["To"] == "zoe@example.org"
    assert mail.get_content_type() == "text/plain"  # no html: no multipart
    assert mail.get_content() == "Plain body.\n"
    assert mail["Cc"] is None and mail["Reply-To"] is None


async def test_bcc_receives_the_mail_but_no_header_names_it(send: Send, smtp: SmtpServer) -> None:
    params = {**PARAMS, "cc": "cid@example.com", "bcc": "boss@example.com, Audit <audit@example.com>"}
    outcome = await send(smtp.port, params)
    assert outcome.ok, outcome.error
    assert smtp.received[0].rcpt_tos == ["ann@example.com", "cid@example.com", "boss@example.com", "audit@example.com"]
    assert outcome.result["recipients"] == smtp.received[0].rcpt_tos
    assert b"boss@example.com" not in smtp.received[0].raw and b"audit@" not in smtp.received[0].raw
    assert only(smtp)["Bcc"] is None


async def test_an_address_given_twice_is_sent_to_once(send: Send, smtp: SmtpServer) -> None:
    outcome = await send(smtp.port, {**PARAMS, "cc": "Ann@example.com", "bcc": "ann@example.com"})
    assert outcome.ok, outcome.error
    assert smtp.received[0].rcpt_tos == ["ann@example.com"]


async def test_message_id_is_stable_across_attempts_of_one_job(send: Send, smtp: SmtpServer) -> None:
    for job_id in ("mail-1", "mail-1", "mail-2"):
        assert (await send(smtp.port, PARAMS, id=job_id)).ok
    ids = [r.message["Message-ID"] for r in smtp.received]
    assert ids[0] == ids[1] != ids[2]


# --- TLS and AUTH ---------------------------------------------------------------------------------------------
async def test_starttls_and_auth_with_name_and_password(send: Send, smtp_tls: SmtpServer, cert: Certificate) -> None:
    secret = Secret(PASSWORD)
    outcome = await send(
        smtp_tls.port, PARAMS, starttls=True, tls_context=cert.client_context(), user=USER, password=secret
    )
    assert outcome.ok, outcome.error
    assert smtp_tls.received[0].tls
    assert smtp_tls.received[0].login == USER


async def test_wrong_password_is_final(send: Send, smtp_tls: SmtpServer, cert: Certificate) -> None:
    outcome = await send(
        smtp_tls.port, PARAMS, starttls=True, tls_context=cert.client_context(), user=USER, password=Secret("wrong")
    )
    assert not outcome.ok and outcome.final
    assert outcome.error.startswith("SMTP 535 ")
    assert smtp_tls.received == []


async def test_a_server_requiring_starttls_refuses_plain_mail_as_final(send: Send, smtp_tls: SmtpServer) -> None:
    outcome = await send(smtp_tls.port, PARAMS)  # no --starttls: the server answers 530 "Must issue a STARTTLS"
    assert not outcome.ok and outcome.final
    assert outcome.error.startswith("SMTP 530 ")


async def test_starttls_with_an_untrusted_certificate_fails_and_retries(
    send: Send, smtp_tls: SmtpServer, other_cert: Certificate
) -> None:
    outcome = await send(smtp_tls.port, PARAMS, starttls=True, tls_context=other_cert.client_context())
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("TLS error with 127.0.0.1:"), outcome.error
    assert outcome.error.endswith("self-signed certificate"), outcome.error
    assert smtp_tls.received == []


async def test_implicit_tls_with_auth(send: Send, implicit_server: SmtpServer, cert: Certificate) -> None:
    implicit_server.reset()
    options = {"tls": True, "tls_context": cert.client_context(), "user": USER, "password": Secret(PASSWORD)}
    outcome = await send(implicit_server.port, PARAMS, **options)
    assert outcome.ok, outcome.error
    assert implicit_server.received[0].tls and implicit_server.received[0].login == USER


async def test_implicit_tls_against_a_plain_server_fails_and_retries(send: Send, smtp: SmtpServer) -> None:
    outcome = await send(smtp.port, PARAMS, tls=True, seconds=5)
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("TLS error with 127.0.0.1:"), outcome.error


def test_starttls_and_implicit_tls_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        MailRunner(server="localhost", starttls=True, tls=True)


# --- what the server answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "reply", "final"),
    [
        ("rcpt", "450 4.2.1 mailbox busy, try later", False),
        ("rcpt", "550 5.1.1 no such user", True),
        ("data", "451 4.3.0 local problem, try later", False),
        ("data", "554 5.7.1 message refused as spam", True),
    ],
)
async def test_4xx_is_retried_and_5xx_is_final(
    send: Send, smtp: SmtpServer, where: str, reply: str, final: bool
) -> None:
    smtp.replies(rcpt=reply) if where == "rcpt" else smtp.replies(data=reply)
    outcome = await send(smtp.port, PARAMS)
    assert not outcome.ok
    assert outcome.final is final
    assert outcome.error.startswith(f"SMTP {reply}"), outcome.error
    assert smtp.received == []


async def test_some_recipients_refused_is_a_success_that_lists_them(send: Send, smtp: SmtpServer) -> None:
    smtp.replies(refuse={"ghost@example.com": "550 5.1.1 no such user", "busy@example.com": "452 4.2.2 mailbox full"})
    outcome = await send(smtp.port, {**PARAMS, "to_addr": "ann@example.com, ghost@example.com, busy@example.com"})
    assert outcome.ok, outcome.error
    assert outcome.result["recipients"] == ["ann@example.com", "ghost@example.com", "busy@example.com"]
    assert outcome.result["refused"] == {
        "ghost@example.com": "550 5.1.1 no such user",
        "busy@example.com": "452 4.2.2 mailbox full",
    }
    assert smtp.received[0].rcpt_tos == ["ann@example.com"]


async def test_all_recipients_refused_is_final(send: Send, smtp: SmtpServer) -> None:
    smtp.replies(refuse={"ann@example.com": "550 5.1.1 no such user", "bob@example.com": "553 5.1.3 bad address"})
    outcome = await send(smtp.port, {**PARAMS, "to_addr": "ann@example.com, bob@example.com"})
    assert not outcome.ok and outcome.final
    assert outcome.error == "SMTP 550 5.1.1 no such user (refused: ann@example.com, bob@example.com)"


async def test_all_refused_with_one_temporary_refusal_is_retried(send: Send, smtp: SmtpServer) -> None:
    smtp.replies(refuse={"ann@example.com": "550 5.1.1 no such user", "bob@example.com": "450 4.2.1 try later"})
    outcome = await send(smtp.port, {**PARAMS, "to_addr": "ann@example.com, bob@example.com"})
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("SMTP 450 4.2.1 try later")


# --- network ------------------------------------------------------------------------------------------------
async def test_server_down_is_retried(send: Send) -> None:
    outcome = await send(closed_port(), PARAMS, user=USER, password=Secret(PASSWORD))
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("could not connect to 127.0.0.1:"), outcome.error
    assert outcome.error.endswith(": Connection refused")


async def test_a_server_that_never_answers_times_out_and_is_retried(send: Send) -> None:
    with silent_server() as sock:
        start = time.monotonic()
        outcome = await send(sock.getsockname()[1], PARAMS, seconds=0.5, user=USER, password=Secret(PASSWORD))
        elapsed = time.monotonic() - start
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("timed out after 0.5s talking to 127.0.0.1:")
    assert 0.4 < elapsed < 2.0


async def test_a_server_stalling_after_the_data_times_out_within_the_limit(send: Send) -> None:
    with SmtpServer() as stalling:  # its own server: the stalled answer must not reach another test
        stalling.replies(stall=5)
        start = time.monotonic()
        outcome = await send(stalling.port, PARAMS, seconds=1)
        elapsed = time.monotonic() - start
    assert not outcome.ok and not outcome.final
    assert outcome.error.startswith("timed out after 1s talking to 127.0.0.1:")
    assert 0.9 < elapsed < 1.7  # no QUIT after the limit, waiting up to another second for its answer


# --- params the runner refuses (intake checks them first; a stored job may predate a rule) -------------------
@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"title": "t", "body": "b"}, "from_addr is required for MAIL_TO"),
        ("not json", "params of a MAIL_TO job must be a JSON object"),
        ({**PARAMS, "cc": "not an address"}, "params.cc: 'not an address' is not an email address"),
        ({**PARAMS, "title": "two\nlines"}, "title must be one line"),
    ],
)
async def test_bad_params_are_final_without_connecting(send: Send, params: Any, error: str) -> None:
    outcome = await send(closed_port(), params)
    assert not outcome.ok and outcome.final
    assert outcome.error.startswith(error), outcome.error


def test_the_runner_holds_the_password_only_as_a_secret() -> None:
    runner = MailRunner(server="localhost", user=USER, password=Secret(PASSWORD))
    assert PASSWORD not in repr(vars(runner))
