"""The cron file: its syntax, its errors (with line numbers), and its fire times, daylight saving included."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from poulpe.cron import CronError, CronLine, fire_times, load_cron, next_fire, parse_cron, report
from poulpe.job import Method
from poulpe.job_in import ID_PATTERN
from poulpe.validate import Limits, job_from_object

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "cron_task.example"
PARIS = "Europe/Paris"


def line_of(expr: str, rest: str = "http://127.0.0.1:9/x GET") -> CronLine:
    (line,) = parse_cron(f"{expr} {rest}")
    return line


def fires(expr: str, after: str, tz: str, n: int = 3) -> list[str]:
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(after).timestamp()
    return [
        datetime.fromtimestamp(t, zone).isoformat() for t in itertools.islice(fire_times(line_of(expr), start, zone), n)
    ]


# Each row: a line's time fields, the moment to look from, the --timezone, then the next three fire times in that zone
# (fewer when the line stops firing). 2026-03-01 is a Sunday. In Europe/Paris clocks go from 02:00 to 03:00 on
# 2026-03-29 (02:xx does not exist) and from 03:00 back to 02:00 on 2026-10-25 (02:xx happens twice).
# fmt: off
TABLE = [
    # seconds first: every 5 seconds
    ("*/5 * * * * * *",           "2026-03-01T12:00:03+00:00", "UTC",
        "2026-03-01T12:00:05+00:00   2026-03-01T12:00:10+00:00   2026-03-01T12:00:15+00:00"),
    # a year: 09:00 on the 1st of each month of 2027
    ("0 0 9 1 * * 2027",          "2026-03-01T12:00:00+01:00", PARIS,
        "2027-01-01T09:00:00+01:00   2027-02-01T09:00:00+01:00   2027-03-01T09:00:00+01:00"),
    # steps in a range of hours, Monday to Friday, looking from a Friday evening
    ("0 */15 9-17 * * MON-FRI *", "2026-03-06T17:40:00+01:00", PARIS,
        "2026-03-06T17:45:00+01:00   2026-03-09T09:00:00+01:00   2026-03-09T09:15:00+01:00"),
    # a step inside a range: minutes 0, 10, 20, 30
    ("0 0-30/10 * * * * *",       "2026-03-01T12:25:00+00:00", "UTC",
        "2026-03-01T12:30:00+00:00   2026-03-01T13:00:00+00:00   2026-03-01T13:10:00+00:00"),
    # a start with a step: seconds 10, 30, 50
    ("10/20 * * * * * *",         "2026-03-01T12:00:00+00:00", "UTC",
        "2026-03-01T12:00:10+00:00   2026-03-01T12:00:30+00:00   2026-03-01T12:00:50+00:00"),
    # month names and ? in day-of-week: midnight on 1 January and 1 July
    ("0 0 0 1 JAN,JUL ? *",       "2026-03-01T00:00:00+01:00", PARIS,
        "2026-07-01T00:00:00+02:00   2027-01-01T00:00:00+01:00   2027-07-01T00:00:00+02:00"),
    # ? in day-of-month, a weekday name in lower case: noon on Sundays
    ("0 0 12 ? * sun *",          "2026-03-02T00:00:00+00:00", "UTC",
        "2026-03-08T12:00:00+00:00   2026-03-15T12:00:00+00:00   2026-03-22T12:00:00+00:00"),
    # 7 is Sunday too, and ? may stand in any field (here the year)
    ("0 0 12 * * 7 ?",            "2026-03-02T00:00:00+00:00", "UTC",
        "2026-03-08T12:00:00+00:00   2026-03-15T12:00:00+00:00   2026-03-22T12:00:00+00:00"),
    # a weekday range across the week's end: Friday to Monday, looking from a Thursday
    ("0 0 12 ? * FRI-MON *",      "2026-03-05T00:00:00+00:00", "UTC",
        "2026-03-06T12:00:00+00:00   2026-03-07T12:00:00+00:00   2026-03-08T12:00:00+00:00"),
    # day-of-month and day-of-week both given: either fires, as in cron (Mon 30th, Wed 1st, Mon 6th)
    ("0 0 0 1 * MON *",           "2026-03-25T00:00:00+00:00", "UTC",
        "2026-03-30T00:00:00+00:00   2026-04-01T00:00:00+00:00   2026-04-06T00:00:00+00:00"),
    # years with a step
    ("0 0 0 1 1 * 2027-2031/2",   "2026-03-01T00:00:00+00:00", "UTC",
        "2027-01-01T00:00:00+00:00   2029-01-01T00:00:00+00:00   2031-01-01T00:00:00+00:00"),
    # "30-30" is minute 30 (croniter alone reads an equal range as the whole field: every minute)
    ("0 30-30 * * * * *",         "2026-03-01T00:00:00+00:00", "UTC",
        "2026-03-01T00:30:00+00:00   2026-03-01T01:30:00+00:00   2026-03-01T02:30:00+00:00"),
    # 64 years ahead: one fire, then none (croniter alone stops looking 50 years ahead)
    ("0 0 0 1 1 * 2090",          "2026-03-01T00:00:00+00:00", "UTC",
        "2090-01-01T00:00:00+00:00"),
    # DST gap: 02:30 does not exist on 2026-03-29 in Paris, so that day is skipped (not moved to 03:00)
    ("0 30 2 * * * *",            "2026-03-28T12:00:00+01:00", PARIS,
        "2026-03-30T02:30:00+02:00   2026-03-31T02:30:00+02:00   2026-04-01T02:30:00+02:00"),
    # DST gap, every 15 minutes: 01:45, then 03:00 (02:00 to 02:59 do not exist)
    ("0 */15 * * * * *",          "2026-03-29T01:40:00+01:00", PARIS,
        "2026-03-29T01:45:00+01:00   2026-03-29T03:00:00+02:00   2026-03-29T03:15:00+02:00"),
    # DST gap, every second: 01:59:59 is followed by 03:00:00, one real second later
    ("* * * * * * *",             "2026-03-29T01:59:58+01:00", PARIS,
        "2026-03-29T01:59:59+01:00   2026-03-29T03:00:00+02:00   2026-03-29T03:00:01+02:00"),
    # DST gap in New York (2026-03-08): 02:30 is skipped there too
    ("0 30 2 * * * *",            "2026-03-07T12:00:00-05:00", "America/New_York",
        "2026-03-09T02:30:00-04:00   2026-03-10T02:30:00-04:00   2026-03-11T02:30:00-04:00"),
    # the only fire would be in the gap: none
    ("0 30 2 29 3 * 2026",        "2026-03-01T00:00:00+01:00", PARIS,
        ""),
    # DST repeat: 02:30 happens twice on 2026-10-25 in Paris and fires once, at its first occurrence
    ("0 30 2 * * * *",            "2026-10-24T12:00:00+02:00", PARIS,
        "2026-10-25T02:30:00+02:00   2026-10-26T02:30:00+01:00   2026-10-27T02:30:00+01:00"),
    # DST repeat, every 15 minutes: 02:30 and 02:45 summer time, then 03:00 winter time (02:xx is not fired again)
    ("0 */15 * * * * *",          "2026-10-25T02:20:00+02:00", PARIS,
        "2026-10-25T02:30:00+02:00   2026-10-25T02:45:00+02:00   2026-10-25T03:00:00+01:00"),
    # DST repeat, looking from inside the second 02:xx: those wall times already fired, the next is 03:00
    ("0 */15 * * * * *",          "2026-10-25T02:20:00+01:00", PARIS,
        "2026-10-25T03:00:00+01:00   2026-10-25T03:15:00+01:00   2026-10-25T03:30:00+01:00"),
    # DST repeat, every second: 02:59:59 summer time is followed by 03:00:00 winter time
    ("* * * * * * *",             "2026-10-25T02:59:58+02:00", PARIS,
        "2026-10-25T02:59:59+02:00   2026-10-25T03:00:00+01:00   2026-10-25T03:00:01+01:00"),
    # a past year: none
    ("0 0 0 1 1 * 2020",          "2026-03-01T00:00:00+00:00", "UTC",
        ""),
]
# fmt: on


@pytest.mark.parametrize(("expr", "after", "tz", "expected"), TABLE, ids=[f"{row[0]} after {row[1]}" for row in TABLE])
def test_next_fire_times(expr: str, after: str, tz: str, expected: str) -> None:
    assert fires(expr, after, tz) == expected.split()


def test_the_docs_show_the_same_table() -> None:
    docs = (ROOT / "docs" / "cron.md").read_text()
    for expr, after, tz, expected in TABLE:
        assert f"| `{expr}` | {after} | {tz} | {', '.join(expected.split()) or 'none'} |" in docs, expr


def test_next_fire_is_strictly_after_and_none_when_the_line_is_over() -> None:
    utc = ZoneInfo("UTC")
    every5 = line_of("*/5 * * * * * *")
    assert next_fire(every5, 1772366405.0, utc) == 1772366410.0  # 12:00:05 itself is not "after"
    assert next_fire(every5, 1772366404.9999998, utc) == 1772366405.0  # a float just below a fire does not skip it
    assert next_fire(line_of("0 0 0 1 1 * 2020"), 1772366405.0, utc) is None


def test_fire_times_do_not_depend_on_the_process_time_zone() -> None:
    code = (
        "import itertools; from zoneinfo import ZoneInfo; from poulpe.cron import parse_cron, fire_times;"
        "(l,) = parse_cron('0 30 2 * * * * http://h/ GET');"
        "print(list(itertools.islice(fire_times(l, 1774695600, ZoneInfo('Europe/Paris')), 2)))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "TZ": tz}, capture_output=True, text=True, check=True
        ).stdout
        for tz in ("UTC", "America/New_York", "Asia/Kolkata")
    }
    assert runs == {"[1774830600.0, 1774917000.0]\n"}  # 2026-03-30 and 03-31 at 02:30 +02:00


def test_a_file_reads_lines_comments_and_params_verbatim() -> None:
    text = (
        "# a comment\n"
        "\n"
        "   // another, indented\r\n"
        "*/5 * * * * * *   http://127.0.0.1:9/ping   get   a=1&b=2  #not-a-comment  \n"
        "  0 0 9 1 * * 2027 ops@example.com mail_to "
        '{"from_addr": "poulpe@example.com", "title": "t", "body": "b"}\r\n'
        "0 30 2 * * 1-5 * nightly_report EXEC\n"
    )
    ping, mail, nightly = parse_cron(text)
    assert (ping.line_no, ping.expr, ping.name, ping.method) == (4, "*/5 * * * * * *", "http://127.0.0.1:9/ping", "GET")
    assert ping.params == "a=1&b=2  #not-a-comment"
    assert (mail.line_no, mail.method, mail.name) == (5, Method.MAIL_TO, "ops@example.com")
    assert (nightly.line_no, nightly.method, nightly.params) == (6, Method.EXEC, "")
    assert parse_cron("") == [] and parse_cron("# only comments\n\n// here\n") == []


# Each bad line sits on line 3 of its file; the message names the line and what is wrong with it.
BAD = [
    ("*/5 * * * * * http://h/ GET", "found 6 time fields before the name 'http://h/'; a line needs 7"),
    ("0 0 0 * * * * * http://h/ GET", "found 8 time fields"),
    ("60 * * * * * * http://h/ GET", "field 1 (second) value 60 is out of range 0-59"),
    ("0 60 * * * * * http://h/ GET", "field 2 (minute) value 60 is out of range 0-59"),
    ("0 0 24 * * * * http://h/ GET", "field 3 (hour) value 24 is out of range 0-23"),
    ("0 0 0 0 * * * http://h/ GET", "field 4 (day-of-month) value 0 is out of range 1-31"),
    ("0 0 0 1-32 * * * http://h/ GET", "field 4 (day-of-month) value 32 is out of range 1-31"),
    ("0 0 0 * 13 * * http://h/ GET", "field 5 (month) value 13 is out of range 1-12"),
    ("0 0 0 * * 8 * http://h/ GET", "field 6 (day-of-week) value 8 is out of range 0-7"),
    ("0 0 0 * * * 2100 http://h/ GET", "field 7 (year) value 2100 is out of range 1970-2099"),
    ("0 0 0 * * * 1969 http://h/ GET", "field 7 (year) value 1969 is out of range 1970-2099"),
    ("*/0 * * * * * * http://h/ GET", "field 1 (second): step 0 in '*/0'"),
    ("0 0 0 * JANUARY * * http://h/ GET", "field 5 (month): 'JANUARY' is not a month name (JAN..DEC)"),
    ("0 0 0 * * MONDAY * http://h/ GET", "field 6 (day-of-week): 'MONDAY' is not a weekday name (MON..SUN)"),
    ("0 0 MON * * * * http://h/ GET", "field 3 (hour): 'MON' is not a number 0-23"),
    ("0 0 0 L * * * http://h/ GET", "field 4 (day-of-month): 'L' is not a number 1-31"),
    ("0 0 0 * * 1#2 * http://h/ GET", "field 6 (day-of-week): '1#2' is not valid"),
    ("0 ?,5 * * * * * http://h/ GET", "field 2 (minute): '?' is not valid"),
    ("0 0 0 1 1 * 2030-2027 http://h/ GET", "field 7 (year): range '2030-2027' runs backwards"),
    ("0 0 0 30 FEB * * http://h/ GET", "day-of-month 30 never occurs in month FEB"),
    ("0 0 0 29 2 ? 2027 http://h/ GET", "day-of-month 29 never occurs in month 2 of year 2027"),
    ("* * * * * * * http://h/ FETCH", "unknown method 'FETCH'; use GET POST PUT PATCH DELETE EXEC MAIL_TO"),
    ("* * * * * * * billing QUEUE {}", "QUEUE jobs wait for external workers and cannot be cron jobs"),
    ("* * * * * * *", "missing the name and method"),
    ("* * * * * * * http://h/", "missing the method after the name 'http://h/'"),
    ("* * * * * * * ops@example.com MAIL_TO hello", "params of a MAIL_TO job must be a JSON object"),
    ("* * * * * * * ops@example.com MAIL_TO", "params of a MAIL_TO job must be an object"),
    ('* * * * * * * ops@example.com MAIL_TO {"from_addr": "p@example.com", "body": "b"}', "title is required"),
    ("* * * * * * * http://h/ POST {not json", "params of a POST line are its JSON body, and this is not JSON"),
]


@pytest.mark.parametrize(("bad", "what"), BAD, ids=[row[1][:40] for row in BAD])
def test_a_bad_line_is_refused_with_its_line_number(bad: str, what: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(f"# sec min hour dom month dow year name method params\n*/5 * * * * * * http://h/ok GET\n{bad}\n")
    assert caught.value.message.startswith("cron file line 3: ")
    assert what in caught.value.message
    assert caught.value.line_no == 3


def test_the_fingerprint_depends_on_what_the_line_says_only() -> None:
    line = line_of("0 0 9 1 * * 2027", "http://h/report GET a=1")
    assert re.fullmatch(r"[0-9a-f]{12}", line.fingerprint)
    assert line.fingerprint == "e0f5047fca2e"  # pinned: processes running different releases must agree
    moved = parse_cron("# moved down, spaced out\n\n0  0 9  1 *  *  2027   http://h/report   get  a=1\n")[0]
    assert moved.line_no == 3 and moved.fingerprint == line.fingerprint
    assert (
        line_of("0 0 9 1 JAN ? 2027", "http://h/ GET").fingerprint
        == line_of("0 0 9 1 1 * 2027", "http://h/ GET").fingerprint
    )
    changed = [
        line_of("0 0 10 1 * * 2027", "http://h/report GET a=1"),
        line_of("0 0 9 1 * * 2027", "http://h/other GET a=1"),
        line_of("0 0 9 1 * * 2027", "http://h/report DELETE a=1"),
        line_of("0 0 9 1 * * 2027", "http://h/report GET a=2"),
    ]
    assert len({line.fingerprint, *(c.fingerprint for c in changed)}) == 5


def test_the_fingerprint_is_the_same_in_another_process() -> None:
    code = "from poulpe.cron import parse_cron; print(parse_cron('*/5 * * * * * * http://h/ GET a=1')[0].fingerprint)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == line_of("*/5 * * * * * *", "http://h/ GET a=1").fingerprint


def test_each_fire_is_an_ordinary_job_the_validator_takes(tmp_path: Path) -> None:
    program = tmp_path / "nightly_report"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    limits = Limits(exec_dir=tmp_path, mail_enabled=True)
    fire = 1798794000.0  # 2027-01-01T09:00:00Z
    for line in parse_cron(EXAMPLE.read_text()):
        fields = line.job_fields(fire)
        assert re.fullmatch(ID_PATTERN, fields["id"]) and fields["id"] == f"cron:{line.fingerprint}:1798794000"
        job = job_from_object(fields, limits, now=fire - 60).job
        delay = line.jitter(job.id)  # 0 but for a line with jitter: its own delay, from its id
        assert (job.id, job.method, job.name, job.run_at) == (line.job_id(fire), line.method, line.name, fire + delay)
    mail = line_of(
        "0 0 9 1 * * 2027", 'ops@example.com MAIL_TO {"from_addr": "p@example.com", "title": "t", "body": "b"}'
    )
    assert mail.job_fields(fire)["params"] == {"from_addr": "p@example.com", "title": "t", "body": "b"}
    assert line_of("* * * * * * *", "http://h/ POST [1, 2]").job_fields(fire)["params"] == "[1, 2]"
    assert "params" not in line_of("* * * * * * *").job_fields(fire)


def test_load_cron_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CronError, match=r"missing\.cron: cannot read the cron file"):
        load_cron(tmp_path / "missing.cron")
    broken = tmp_path / "broken.cron"
    broken.write_bytes(b"# ok\n*/5 * * * * * * http://h/ GET \xff\n")
    with pytest.raises(CronError, match=r"broken\.cron line 2: not UTF-8"):
        load_cron(broken)
    broken.write_text("# ok\n0 0 25 * * * * http://h/ GET\n")
    with pytest.raises(CronError) as caught:
        load_cron(broken)
    assert caught.value.message == f"{broken} line 2: field 3 (hour) value 25 is out of range 0-23"


def test_the_example_file_shows_every_method_and_parses() -> None:
    lines = load_cron(EXAMPLE)
    assert {line.method for line in lines} == set(Method) - {Method.QUEUE}
    text = EXAMPLE.read_text()
    assert "\n//" in text and "\n#" in text
    mail = next(line for line in lines if line.method is Method.MAIL_TO)
    assert isinstance(json.loads(mail.params), dict)


def test_the_report_shows_each_line_and_its_next_fires(tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("# two lines\n0 30 2 * * * * http://h/night GET\n0 0 0 1 1 * 2020 http://h/old GET\n")
    lines = load_cron(cron)
    shown = report(cron, lines, tz=PARIS, now=datetime.fromisoformat("2026-03-28T12:00:00+01:00").timestamp(), count=2)
    assert shown.splitlines() == [
        f"{cron}: 2 job lines, times in Europe/Paris",
        f"line 2: 0 30 2 * * * *  GET http://h/night  (cron:{lines[0].fingerprint})",
        "    next: 2026-03-30T02:30:00+02:00, 2026-03-31T02:30:00+02:00",
        f"line 3: 0 0 0 1 1 * 2020  GET http://h/old  (cron:{lines[1].fingerprint})",
        "    next: never (no fire time left)",
    ]
    assert "11 job lines" in report(EXAMPLE, load_cron(EXAMPLE))
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        report(cron, lines, tz="Mars/Olympus")
