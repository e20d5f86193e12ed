"""Flags as a user gives them: the Rust poulpe's names, dashed spellings, POULPE_* variables, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from poulpe.cli import settings_from
from poulpe.settings import Secret, SettingsError


def test_rust_names_and_dashed_spellings_are_the_same_flag() -> None:
    rust = settings_from(["--retry_interval", "5", "--max_retry", "2", "--exec_dir", "/tmp"])
    dashed = settings_from(["--retry-interval", "5", "--max-retry", "2", "--exec-dir", "/tmp"])
    assert rust == dashed
    assert (rust.retry_interval, rust.max_retry, rust.exec_dir) == (5.0, 2, Path("/tmp"))


def test_environment_fills_what_flags_leave_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POULPE_WORKERS", "3")
    monkeypatch.setenv("POULPE_PORT", "9100")
    monkeypatch.setenv("POULPE_LOG_JSON", "true")
    monkeypatch.setenv("POULPE_TOKEN", "from-env")
    settings = settings_from(["--port", "9200"])
    assert (settings.workers, settings.port, settings.log_json) == (3, 9200, True)
    assert settings.token == Secret("from-env")
    assert "from-env" not in repr(settings) and "from-env" not in str(settings)


def test_defaults_bind_to_loopback() -> None:
    settings = settings_from([])
    assert (settings.host, settings.port, settings.workers, settings.max_retry) == ("127.0.0.1", 8000, 8, 3)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--workers", "0"], "--workers"),
        (["--port", "70000"], "--port"),
        (["--timezone", "Mars/Olympus"], "--timezone"),
        (["--smtp_tls", "--starttls", "--smtp_server", "x"], "--smtp_tls"),
        (["--exec_dir", "/does/not/exist"], "--exec_dir"),
        (["--redis", "http://127.0.0.1:6379/0"], "--redis"),
        (["--redis", "redis://127.0.0.1:6379/0", "--redis_prefix", "a}b"], "--redis_prefix"),
        (["--partitions", "6"], "--partitions"),
        (["--redis_replicas", "1"], "--redis_replicas"),
        (["--redis", "redis://127.0.0.1:6379/0", "--partitions", "0"], "--partitions"),
        (["--kafka_servers", "127.0.0.1:9092"], "--kafka_servers"),
        (["--kingtask_addr", "9595"], "--kingtask_addr"),
        (["--kingtask_addr", "127.0.0.1:99999"], "--kingtask_addr"),
        (["--kingtask_addr", "127.0.0.1:"], "--kingtask_addr"),
    ],
)
def test_a_flag_that_cannot_work_is_named(argv: list[str], flag: str) -> None:
    with pytest.raises(SettingsError, match=flag):
        settings_from(argv)


def test_kingtask_addr_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from([]).kingtask_bind is None  # off unless asked for
    assert settings_from(["--kingtask_addr", "127.0.0.1:9595"]).kingtask_bind == ("127.0.0.1", 9595)
    assert settings_from(["--kingtask-addr", "[::1]:9595"]).kingtask_bind == ("::1", 9595)
    monkeypatch.setenv("POULPE_KINGTASK_ADDR", "0.0.0.0:9696")
    assert settings_from([]).kingtask_bind == ("0.0.0.0", 9696)
