"""`poulpe cron check FILE [flags]`: the verdict `poulpe --cron FILE [flags]` gives at start, same flags."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from poulpe import cli, cron_check
from poulpe.settings import SettingsError

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "cron_task.example"
MAIL = '{"from_addr": "p@example.com", "title": "t", "body": "b"}'


def server_start(argv: list[str]) -> str | None:
    """What `poulpe ARGV` says when it refuses to start (None when it would start)."""
    try:
        cli.check_start(cli.settings_from(argv))
    except SettingsError as exc:
        return str(exc)
    return None


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cron_check.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def exec_dir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples" / "bin", tmp_path / "bin")
    return tmp_path / "bin"


@pytest.mark.parametrize(
    ("line", "needs", "why"),
    [
        ("0 0 * * * * * ftp://127.0.0.1/file GET", [], "http"),
        ("0 0 4 * * * * nightly_report EXEC --full", ["--exec_dir", "{exec_dir}"], "EXEC is disabled"),
        (f"0 0 9 1 * * * ops@example.com MAIL_TO {MAIL}", ["--smtp_server", "127.0.0.1"], "MAIL_TO is disabled"),
        ("0 0 * * * * * http://elsewhere.example/x GET", ["--allow_hosts", "elsewhere.example"], "allow"),
    ],
)
def test_the_check_refuses_what_the_server_refuses_and_takes_the_same_flags(
    tmp_path: Path, exec_dir: Path, capsys: pytest.CaptureFixture[str], line: str, needs: list[str], why: str
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"# one line\n{line}\n")
    refused = server_start(["--cron", str(cron), "--allow_hosts", "127.0.0.1"])
    assert refused is not None and "line 2" in refused and why in refused
    code, out, err = check([str(cron), "--allow_hosts", "127.0.0.1"], capsys)
    assert (code, out) == (2, "") and err == f"poulpe: {refused}\n"
    if not needs:
        return  # no flag makes an ftp:// URL a job poulpe can run
    flags = [flag.format(exec_dir=exec_dir) for flag in needs]
    if "--allow_hosts" not in flags:
        flags += ["--allow_hosts", "127.0.0.1"]
    assert server_start(["--cron", str(cron), *flags]) is None
    code, out, err = check([str(cron), *flags], capsys)
    assert code == 0 and err == "" and out.startswith(f"{cron}: 1 job line, times in UTC\nline 2: ")


def test_the_check_reads_the_same_variables_as_the_server(
    tmp_path: Path, exec_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("0 30 2 * * * * nightly_report EXEC\n")
    monkeypatch.setenv("POULPE_EXEC_DIR", str(exec_dir))
    monkeypatch.setenv("POULPE_TIMEZONE", "Europe/Paris")
    code, out, _ = check([str(cron)], capsys)
    assert code == 0 and "times in Europe/Paris" in out and "02:30:00+0" in out
    monkeypatch.setenv("POULPE_CRON", str(cron))  # the file may come from --cron or POULPE_CRON as well
    assert check([], capsys)[0] == 0
    code, _, err = check([str(cron), "--timezone", "Mars/Olympus"], capsys)  # the server's check of the flag
    assert code == 2 and "--timezone 'Mars/Olympus'" in err


def test_the_check_names_the_file_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check([], capsys)
    assert code == 2 and "poulpe cron check FILE" in err


def test_the_commands_the_example_prints_work_as_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    head = [line.removeprefix("#").strip() for line in EXAMPLE.read_text().splitlines()[:6]]
    run, check_it = (shlex.split(line)[1:] for line in head if line.startswith(("poulpe --", "poulpe cron check ")))
    monkeypatch.chdir(EXAMPLE.parent)
    assert run[:2] == ["--cron", "cron_task.example"] and check_it[:2] == ["cron", "check"]
    assert server_start(run) is None
    with pytest.raises(SystemExit) as ended:
        cli.main([*run, "--cron_check"])
    assert ended.value.code == 0
    code, out, _ = check(check_it[2:], capsys)
    assert code == 0 and "cron_task.example: 11 job lines, times in Europe/Paris" in out
    # without the flags it names, the file is refused by both, for its EXEC line
    code, _, err = check(["cron_task.example"], capsys)
    assert code == 2 and "EXEC is disabled" in err and "EXEC is disabled" in (server_start(run[:2]) or "")
