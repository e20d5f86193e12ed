"""A mistyped flag is answered with the flag it most likely meant, on `poulpe` and on its subcommands."""

from __future__ import annotations

import pytest

from poulpe import cli


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--wokers", "4"], "did you mean --workers?"),
        (["--wokers=4"], "did you mean --workers?"),
        (["--exec-dri", "/opt/jobs"], "did you mean --exec-dir?"),
        (["--smtp_sever", "mail", "--job_timout", "5"], "did you mean --smtp_server, --job_timeout?"),
        (["cron", "check", "cron_task", "--timzone", "UTC"], "did you mean --timezone?"),
        (["submit", "--wiat", "5"], "did you mean --wait?"),
        (["dead", "list", "--jsn"], "did you mean --json?"),
    ],
)
def test_a_typo_in_a_flag_gets_a_suggestion(argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        cli.main(argv)
    assert ended.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("poulpe") and "unrecognized arguments: " in last and last.endswith(f"; {hint}")


def test_a_flag_near_nothing_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--zzz"])
    assert capsys.readouterr().err.splitlines()[-1] == "poulpe: error: unrecognized arguments: --zzz"
