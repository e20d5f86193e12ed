"""A cron line's bracketed options (SPEC 10.5): read with the rest of the line, refused with the line's number, and
the same verdict from `poulpe cron check` as from the server's start."""

from __future__ import annotations

from pathlib import Path

import pytest

from poulpe import cli, cron_check
from poulpe.cron import parse_cron
from poulpe.cron_options import Overlap
from poulpe.settings import SettingsError

URL = "http://127.0.0.1:9/report"


def server_start(argv: list[str]) -> str | None:
    try:
        cli.check_start(cli.settings_from(argv))
    except SettingsError as exc:
        return str(exc)
    return None


def test_every_option_is_read_with_the_line() -> None:
    text = (
        "# a report in Tokyo time\n"
        f"[tz=Asia/Tokyo overlap=skip catchup=3600 jitter=2.5 key=reports priority=-5 paused=true] "
        f"0 0 9 * * * * {URL} GET a=1\n"
        f"[] * * * * * * * {URL} GET\n"
    )
    tokyo, plain = parse_cron(text)
    options = tokyo.options
    assert (options.tz, options.overlap, options.catchup, options.jitter) == ("Asia/Tokyo", Overlap.SKIP, 3600, 2.5)
    assert (options.key, options.priority, options.paused) == ("reports", -5, True)
    assert (tokyo.line_no, tokyo.expr, tokyo.name, tokyo.params) == (2, "0 0 9 * * * *", URL, "a=1")
    fields = tokyo.job_fields(1_800_000_000)
    assert fields["key"] == "reports" and fields["priority"] == -5
    assert 1_800_000_000 <= fields["at"] <= 1_800_000_002.5
    assert plain.options.overlap is Overlap.ALLOW and "key" not in plain.job_fields(1_800_000_000)


def test_a_line_without_options_keeps_its_fingerprint_and_options_make_another() -> None:
    (bare,) = parse_cron(f"0 0 9 * * * * {URL} GET\n")
    (empty,) = parse_cron(f"[] 0 0 9 * * * * {URL} GET\n")
    (tokyo,) = parse_cron(f"[tz=Asia/Tokyo] 0 0 9 * * * * {URL} GET\n")
    assert bare.fingerprint == empty.fingerprint
    assert tokyo.fingerprint != bare.fingerprint


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ("tz=Mars/Olympus", "tz=Mars/Olympus: unknown time zone"),
        ("overlap=never", "overlap=never: write overlap=allow, overlap=skip or overlap=replace"),
        ("catchup=-1", "catchup=-1: a whole number of seconds"),
        ("catchup=1.5", "catchup=1.5: a whole number of seconds"),
        ("jitter=soon", "jitter=soon: a number of seconds"),
        ("jitter=-2", "jitter=-2: a number of seconds"),
        ("key=a%b", "key=a%b: key must be 1 to 128 characters"),
        ("priority=101", "priority=101: an integer from -100 to 100"),
        ("paused=yes", "paused=yes: write paused=true or paused=false"),
        ("color=blue", "unknown option 'color'"),
        ("paused", "option 'paused' needs a value"),
        ("jitter=1 jitter=2", "option 'jitter' is given twice"),
    ],
)
def test_a_bad_option_is_refused_with_its_line_number_by_the_check_and_the_server_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: str, said: str
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"# fine\n* * * * * * * {URL} GET\n[{options}] * * * * * * * {URL} GET\n")
    refused = server_start(["--cron", str(cron)])
    assert refused is not None and refused.startswith(f"{cron} line 3: {said}")
    assert cron_check.main([str(cron)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"poulpe: {refused}\n"


def test_an_unclosed_bracket_is_refused(tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"[tz=UTC * * * * * * * {URL} GET\n")
    refused = server_start(["--cron", str(cron)])
    assert refused is not None and "line 1: the options' bracket is not closed" in refused


def test_the_check_shows_each_line_in_its_own_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"[tz=Asia/Tokyo jitter=2] 0 0 9 * * * * {URL} GET\n0 0 9 * * * * {URL} GET\n")
    assert server_start(["--cron", str(cron)]) is None
    assert cron_check.main([str(cron), "--timezone", "UTC"]) == 0
    out, _ = capsys.readouterr()
    tokyo, utc = out.splitlines()[1:3], out.splitlines()[3:5]
    assert tokyo[0].startswith("line 1: [tz=Asia/Tokyo jitter=2] 0 0 9 * * * *") and "T09:00:00+09:00" in tokyo[1]
    assert utc[0].startswith("line 2: 0 0 9 * * * *") and "T09:00:00+00:00" in utc[1]
