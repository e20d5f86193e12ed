"""One table of flags (poulpe/flags.py) drives the CLI, the POULPE_* variables, Settings and docs/flags.md."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from poulpe.cli import build_parser, known_secrets, settings_from
from poulpe.flags import FLAGS, markdown
from poulpe.settings import Secret, Settings, SettingsError
from poulpe.store import open_store
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_has_one_row_and_every_row_a_setting() -> None:
    names = [flag.name for flag in FLAGS]
    assert len(names) == len(set(names))
    assert set(names) == {field.name for field in dataclasses.fields(Settings)}


def test_every_flag_is_on_the_command_line_in_both_spellings() -> None:
    options = {option for action in build_parser()._actions for option in action.option_strings}
    for flag in FLAGS:
        assert set(flag.spellings) <= options or flag.env_only, flag.name
    assert "--redis_password" not in options and "--redis-password" not in options  # ps would show it


def test_the_docs_flag_list_is_current() -> None:
    written = (ROOT / "docs/flags.md").read_text()
    assert written == markdown(), "run: python -m poulpe.flags > docs/flags.md"
    printed = subprocess.run([sys.executable, "-m", "poulpe.flags"], capture_output=True, text=True, check=True)
    assert printed.stdout == written


def test_a_variable_that_is_not_a_number_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POULPE_WORKERS", "many")
    with pytest.raises(SettingsError, match="POULPE_WORKERS"):
        settings_from([])


def test_allow_hosts_from_the_flag_or_the_variable_are_the_same_list(monkeypatch: pytest.MonkeyPatch) -> None:
    flagged = settings_from(["--allow_hosts", "A.example, b.example"]).allow_hosts
    monkeypatch.setenv("POULPE_ALLOW_HOSTS", "A.example, b.example")
    assert flagged == settings_from([]).allow_hosts == ("a.example", "b.example")


async def test_the_redis_password_is_a_setting_the_store_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        server.client().config_set("requirepass", "s3cret-redis")
        monkeypatch.setenv("POULPE_REDIS_PASSWORD", "s3cret-redis")
        settings = settings_from(["--redis", server.url])
        assert settings.redis_password == Secret("s3cret-redis")
        assert "s3cret-redis" not in repr(settings)
        assert "s3cret-redis" in known_secrets(settings)  # the log redactor masks it
        monkeypatch.delenv("POULPE_REDIS_PASSWORD")  # the store reads no variable: Settings gives it the password
        store = open_store(settings, owner="flags-test")
        await store.open()
        try:
            assert await store.max_seq() == 0
        finally:
            await store.close()
    finally:
        server.stop()
