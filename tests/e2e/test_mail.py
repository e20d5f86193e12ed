"""MAIL_TO jobs through poulpe to a real SMTP server (aiosmtpd): STARTTLS, AUTH, retries and refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serving import ServedPoulpe
from tests.smtp_server import SmtpServer, make_certificate

PASSWORD = "sm7p-pa55-Wd"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[SmtpServer, Path]]:
    certificate = make_certificate(tmp_path)
    server = SmtpServer(auth=("alice", PASSWORD), starttls=certificate, require_starttls=True).start()
    yield server, certificate.cert
    server.stop()


def mail_poulpe(served: Callable[..., ServedPoulpe], server: SmtpServer, cert: Path, *flags: str) -> ServedPoulpe:
    """poulpe with STARTTLS and AUTH; the password comes from the environment, the test CA through SSL_CERT_FILE."""
    return served(
        "--smtp_server", "127.0.0.1", "--smtp_port", str(server.port), "--smtp_name", "alice", "--starttls",
        "--log_level", "debug", *flags,
        env={"POULPE_SMTP_PWD": PASSWORD, "SSL_CERT_FILE": str(cert)},
    )  # fmt: skip


def test_a_mail_arrives_with_its_parts_over_starttls_and_auth(
    served: Callable[..., ServedPoulpe], smtp: tuple[SmtpServer, Path]
) -> None:
    server, cert = smtp
    p = mail_poulpe(served, server, cert)
    mail = {
        "from_addr": "shop@example.com",
        "title": "Your order shipped",
        "body": "Order 42 is on its way.",
        "html": "<p>Order <b>42</b> is on its way.</p>",
        "cc": "boss@example.com",
        "bcc": "audit@example.com",
    }
    with p.client() as client:
        answer = client.post(
            "/task_in_queue", json={"id": "ship-42", "method": "MAIL_TO", "name": "ann@example.com", "params": mail,
                                    "wait": 20},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        result = answer.json()
        info = client.get("/sys_info").text
    assert result["status"] == "succeeded" and result["result"]["smtp_code"] == 250
    [got] = server.received
    assert got.tls and got.login == "alice"
    assert got.mail_from == "shop@example.com"
    assert sorted(got.rcpt_tos) == ["ann@example.com", "audit@example.com", "boss@example.com"]
    message = got.message
    assert message["Subject"] == "Your order shipped" and message["To"] == "ann@example.com"
    assert message["Cc"] == "boss@example.com" and message["Bcc"] is None
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert parts["text/plain"].strip() == "Order 42 is on its way."
    assert parts["text/html"].strip() == "<p>Order <b>42</b> is on its way.</p>"
    assert PASSWORD not in p.log() and PASSWORD not in info


def test_a_450_is_retried_and_a_550_is_dead_at_once(
    served: Callable[..., ServedPoulpe], smtp: tuple[SmtpServer, Path]
) -> None:
    server, cert = smtp
    p = mail_poulpe(served, server, cert, "--retry_interval", "0.3")
    mail = {"from_addr": "shop@example.com", "title": "t", "body": "b"}
    with p.client() as client:
        server.replies(rcpt="450 4.2.0 mailbox busy, try later")
        client.post("/task_in_queue", json={"id": "later", "method": "MAIL_TO", "name": "a@example.com",
                                           "params": mail})  # fmt: skip
        first = client.get("/task_resp/later", params={"timeout": 0.5}).json()
        server.replies()  # the mailbox is free again
        later = client.get("/task_resp/later", params={"timeout": 15}).json()
        server.replies(rcpt="550 5.1.1 no such user")
        refused = client.post(
            "/task_in_queue", json={"id": "never", "method": "MAIL_TO", "name": "b@example.com", "params": mail,
                                    "wait": 15},
        ).json()  # fmt: skip
    assert first["status"] in ("retrying", "queued", "running") and "450" in (first["error"] or "")
    assert later["status"] == "succeeded" and later["attempts"] >= 2
    assert refused["status"] == "dead" and refused["attempts"] == 1 and "550" in refused["error"]
    assert (p.home / "dead").rglob("never.json")
    assert PASSWORD not in p.log()


def test_bad_addresses_are_refused_at_intake(
    served: Callable[..., ServedPoulpe], smtp: tuple[SmtpServer, Path]
) -> None:
    server, cert = smtp
    p = mail_poulpe(served, server, cert)
    good = {"from_addr": "shop@example.com", "title": "t", "body": "b"}
    cases = [
        ("not-an-address", good, "name"),
        ("a@example.com", {**good, "from_addr": "nobody"}, "params.from_addr"),
        ("a@example.com", {**good, "cc": "ok@example.com, bad@"}, "params.cc"),
        ("a@example.com", {**good, "to_addr": "x@example.com\r\nBcc: evil@example.com"}, "params.to_addr"),
        ("a@example.com", {"from_addr": "shop@example.com", "body": "b"}, "params.title"),
    ]
    with p.client() as client:
        for name, params, field in cases:
            answer = client.post("/task_in_queue", json={"method": "MAIL_TO", "name": name, "params": params})
            assert (answer.status_code, answer.json()["field"]) == (400, field), answer.text
    assert server.received == []
