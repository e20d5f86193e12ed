"""An operator drives a running poulpe with the `poulpe` command: submit, status, dead letters. The real command
runs as a subprocess; its exit status is what a script would test."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

import httpx
import pytest

from poulpe.ops_cli import table
from tests.e2e.helpers import accepted, result
from tests.poulpe_process import free_port, poulpe_command
from tests.serving import ServedPoulpe
from tests.target import Target

TOKEN = "cli-s3cret"


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    """poulpe served in the test process; the operator commands run as subprocesses, as a user runs them."""
    return module_served("--max_retry", "0", env={"POULPE_TOKEN": TOKEN}, token=TOKEN)


def run(
    proc: ServedPoulpe, *args: str, stdin: str | None = None, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POULPE_")}
    env["POULPE_URL"] = proc.url
    if token is not None:
        env["POULPE_TOKEN"] = token
    return subprocess.run(
        [*poulpe_command(), *args], input=stdin or "", capture_output=True, text=True, env=env, timeout=60
    )


def test_submit_from_flags_and_wait_for_the_result(proc: ServedPoulpe, fresh_target: Target) -> None:
    url = fresh_target.url("/echo")
    done = run(
        proc, "submit", "-m", "post", "-n", url, "-p", '{"a": 1}', "--id", "cli-1", "--header", "X-A: b", "--wait"
    )
    assert done.returncode == 0, done.stderr
    assert "status:   succeeded" in done.stdout
    assert '"status_code": 200' in done.stdout
    [call] = fresh_target.calls_for("cli-1")
    assert call.headers["X-A"] == "b" and json.loads(call.body) == {"a": 1}


def test_submit_json_from_stdin_then_status(proc: ServedPoulpe, client: httpx.Client, fresh_target: Target) -> None:
    job = {"id": "cli-stdin", "method": "GET", "name": fresh_target.url("/echo"), "delay": 3600}
    done = run(proc, "submit", stdin=json.dumps(job))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cli-stdin: scheduled, runs at ")

    again = run(proc, "submit", stdin=json.dumps(job))
    assert again.returncode == 0 and "already known" in again.stdout

    shown = run(proc, "status", "cli-stdin", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "scheduled"
    waited = run(proc, "status", "cli-stdin", "--wait", "0.2")
    assert waited.returncode == 4, "not final after --wait: exit 4"
    client.delete("/jobs/cli-stdin")
    assert run(proc, "status", "cli-stdin").returncode == 1  # cancelled


def test_a_batch_on_stdin_gets_one_line_per_job(proc: ServedPoulpe, fresh_target: Target) -> None:
    batch = [{"method": "GET", "name": fresh_target.url("/echo"), "id": "cli-b1"}, {"method": "GET", "id": "cli-b2"}]
    done = run(proc, "submit", stdin=json.dumps(batch))
    assert done.returncode == 2  # one job was refused
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "ERROR"]
    assert lines[1].startswith("cli-b1") and "Fail" in lines[2] and "name" in lines[2]


def test_exit_statuses_scripts_rely_on(proc: ServedPoulpe) -> None:
    unknown = run(proc, "status", "no-such-job")
    assert unknown.returncode == 3 and "no job with id no-such-job" in unknown.stderr
    bad = run(proc, "submit", "-m", "GET", "-n", "ftp://nowhere")
    assert bad.returncode == 2 and "field name" in bad.stderr
    no_token = run(proc, "status", "x", token=None)
    assert no_token.returncode == 6 and "POULPE_TOKEN" in no_token.stderr
    env = {**os.environ, "POULPE_URL": f"http://127.0.0.1:{free_port()}"}
    down = subprocess.run([*poulpe_command(), "status", "x"], capture_output=True, text=True, env=env, timeout=60)
    assert down.returncode == 5 and "cannot reach poulpe" in down.stderr
    assert run(proc, "dead", "rm", "--all").returncode == 2


def test_dead_letters_listed_retried_and_removed(
    proc: ServedPoulpe, client: httpx.Client, fresh_target: Target
) -> None:
    for n in range(3):  # each fails once, and --max_retry 0 makes it dead at once; a retry then succeeds
        accepted(client, id=f"cli-dead-{n}", method="GET", name=fresh_target.url(f"/flaky/cli-{n}", fail=1))
        assert result(client, f"cli-dead-{n}")["status"] == "dead"
    accepted(client, id="cli-gone", method="GET", name="http://127.0.0.1:9/closed")
    assert result(client, "cli-gone")["status"] == "dead"

    listed = run(proc, "dead", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["ID", "DAY", "METHOD", "NAME", "ATTEMPTS", "ERROR"]
    assert "4 dead letters" in listed.stdout

    retried = run(proc, "dead", "retry", "cli-dead-0")
    assert retried.returncode == 0 and "cli-dead-0: queued again" in retried.stdout
    assert result(client, "cli-dead-0")["status"] == "succeeded"
    assert run(proc, "dead", "retry", "cli-dead-0").returncode == 3  # its letter is gone

    removed = run(proc, "dead", "rm", "cli-gone")
    assert removed.returncode == 0 and "cli-gone: deleted" in removed.stdout

    everything = run(proc, "dead", "retry", "--all")
    assert everything.returncode == 0, everything.stderr
    assert {"cli-dead-1: queued again", "cli-dead-2: queued again"} <= set(everything.stdout.splitlines())
    assert result(client, "cli-dead-2")["status"] == "succeeded"
    assert "0 dead letters" in run(proc, "dead", "list").stdout


def test_the_server_help_names_the_operator_commands() -> None:
    help_text = subprocess.run([*poulpe_command(), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--workers" in help_text and "poulpe submit" in help_text


def test_table_cells_cannot_drive_the_terminal() -> None:
    shown = table(["id", "name"], [["a", "\x1b[2J\x1b]0;owned\x07" + "x" * 100]])
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown.splitlines()[1].endswith("…")


def test_submit_with_windows_from_flags(proc: ServedPoulpe, client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/echo")
    first = run(proc, "submit", "-m", "GET", "-n", url, "--unique_for", "60", "--unique-key", "cli-report", "--json")
    again = run(proc, "submit", "-m", "GET", "-n", url, "--unique_for", "60", "--unique_key", "cli-report")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    first_id = json.loads(first.stdout)["id"]
    assert again.stdout.startswith(f"{first_id}: already known")
    flags = ["-m", "POST", "-n", url, "--debounce", "cli-hook", "--debounce_delay", "30", "--debounce-max-wait", "60"]
    opened = run(proc, "submit", *flags, "-p", '{"n": 1}', "--json")
    replaced = run(proc, "submit", *flags, "-p", '{"n": 2}')
    pending = json.loads(opened.stdout)["id"]
    assert replaced.stdout.startswith(f"{pending}: debounced, runs at"), replaced.stdout + replaced.stderr
    job = client.get(f"/jobs/{pending}").json()
    assert job["debounce"]["key"] == "cli-hook"
    late = run(proc, "submit", "-m", "GET", "-n", url, "--deadline", "2000-01-01T00:00:00Z", "--max_duration", "5")
    late_id = late.stdout.split(":")[0]
    done = result(client, late_id)
    assert done["status"] == "dead" and done["error"] == "deadline passed before the job started"
    assert done["retry"]["max_duration"] == 5
    refused = run(proc, "submit", "-m", "GET", "-n", url, "--debounce_delay", "1")
    assert refused.returncode != 0 and "--debounce KEY" in refused.stderr
