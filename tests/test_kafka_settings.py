"""Kafka flags as a user gives them: checked at start with the flag named, the SASL password never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from poulpe.cli import settings_from
from poulpe.intake.kafka import message_id, outbox_path
from poulpe.kafka_flags import connection
from poulpe.settings import SettingsError

BASE = ["--kafka_servers", "127.0.0.1:9092", "--kafka_topic", "jobs", "--kafka_resp_topic", "results"]


def test_servers_and_both_topics_are_enough() -> None:
    settings = settings_from(BASE)
    assert (settings.kafka_group, settings.max_pending) == ("poulpe", 10_000)
    assert connection(settings)["bootstrap_servers"] == ["127.0.0.1:9092"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--kafka_servers", "127.0.0.1:9092", "--kafka_resp_topic", "r"], "--kafka_topic"),
        (["--kafka_servers", "127.0.0.1:9092", "--kafka_topic", "j"], "--kafka_resp_topic"),
        (["--kafka_topic", "jobs"], "--kafka_topic needs --kafka_servers"),
        ([*BASE[:4], "--kafka_resp_topic", "jobs"], "--kafka_resp_topic"),
        ([*BASE[:2], "--kafka_topic", "no spaces", *BASE[4:]], "--kafka_topic"),
        (["--kafka_servers", "nonsense", *BASE[2:]], "--kafka_servers"),
        ([*BASE, "--kafka_security_protocol", "SASL_SSL"], "--kafka_sasl_mechanism"),
        ([*BASE, "--kafka_security_protocol", "SASL_SSL", "--kafka_sasl_mechanism", "PLAIN"], "username"),
        ([*BASE, "--kafka_sasl_username", "u"], "SASL settings need"),
        ([*BASE, "--kafka_security_protocol", "TLS"], "--kafka_security_protocol"),
        ([*BASE, "--kafka_ssl_cafile", "/no/such/file"], "--kafka_ssl_cafile"),
        ([*BASE, "--max_pending", "0"], "--max_pending"),
    ],
)
def test_a_kafka_flag_that_cannot_work_is_named(argv: list[str], flag: str) -> None:
    with pytest.raises(SettingsError, match=flag):
        settings_from(argv)


def test_the_sasl_password_comes_from_the_environment_and_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POULPE_KAFKA_SASL_PASSWORD", "hunter2-kafka")
    settings = settings_from(
        [
            *BASE,
            "--kafka-security-protocol",
            "SASL_PLAINTEXT",
            "--kafka-sasl-mechanism",
            "scram-sha-256",
            "--kafka-sasl-username",
            "poulpe",
        ]
    )
    assert "hunter2-kafka" not in repr(settings)
    options = connection(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("poulpe", "hunter2-kafka")


def test_a_message_without_id_has_an_id_of_its_own_that_every_delivery_shares() -> None:
    assert message_id("jobs", 3, 1200) == message_id("jobs", 3, 1200) == "kafka:jobs:3:1200"
    long = message_id("t" * 249, 0, 1)
    assert len(long) <= 128 and long.startswith("kafka:")
    assert long != message_id("t" * 249, 0, 2)


def test_the_outbox_lives_beside_the_data_file() -> None:
    settings = settings_from([*BASE, "--data", "/var/lib/poulpe/jobs.db"])
    assert outbox_path(settings) == Path("/var/lib/poulpe/jobs.kafka.db")
