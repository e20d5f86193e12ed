"""HTTP jobs end to end: a real poulpe process calls a real target, and the user reads the result back."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.helpers import accepted, eventually, result, submit
from tests.serving import ServedPoulpe
from tests.target import Target


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    """One poulpe for the module; every test uses its own job ids."""
    return module_served("--workers", "4")


def test_get_with_a_query_string_reaches_the_target(client: httpx.Client, fresh_target: Target) -> None:
    ack = accepted(client, id="get-qs", method="get", name=fresh_target.url("/echo"), params="a=1&b=two")
    assert ack["id"] == "get-qs" and ack["status"] == "queued"

    done = result(client, "get-qs")
    assert done["status"] == "succeeded"
    assert done["method"] == "GET"
    assert done["attempts"] == 1
    assert done["result"]["status_code"] == 200
    assert done["error"] is None

    [call] = fresh_target.calls_for("get-qs")
    assert call.method == "GET"
    assert call.path == "/echo"
    assert call.query == {"a": "1", "b": "two"}
    assert call.headers["Poulpe-Job-Id"] == "get-qs"
    assert call.headers["Poulpe-Attempt"] == "1"
    assert call.headers["User-Agent"].startswith("poulpe/")
    # the target's answer is the result body
    assert json.loads(done["result"]["body"])["query"] == {"a": "1", "b": "two"}


def test_get_with_object_params_keeps_the_urls_own_query(client: httpx.Client, fresh_target: Target) -> None:
    params = {"city": "Saint-Malo", "n": 3, "tags": ["a", "b"], "on": True}
    accepted(client, id="get-obj", method="GET", name=fresh_target.url("/echo", keep="yes"), params=params)

    assert result(client, "get-obj")["status"] == "succeeded"
    [call] = fresh_target.calls_for("get-obj")
    assert call.query == {"keep": "yes", "city": "Saint-Malo", "n": "3", "tags": "a", "on": "true"}
    assert call.query_string.count("tags=") == 2  # a list becomes a repeated key


def test_post_sends_the_params_as_json_body_with_the_jobs_headers(client: httpx.Client, fresh_target: Target) -> None:
    body = {"order": 42, "lines": [{"sku": "x", "qty": 2}], "note": "été"}
    accepted(
        client,
        id="post-json",
        method="POST",
        name=fresh_target.url("/echo"),
        params=body,
        headers={"X-Trace": "abc-123"},
        meta={"team": "billing"},
    )

    done = result(client, "post-json")
    assert done["status"] == "succeeded"
    assert done["meta"] == {"team": "billing"}
    [call] = fresh_target.calls_for("post-json")
    assert call.method == "POST"
    assert json.loads(call.body) == body
    assert call.headers["Content-Type"].startswith("application/json")
    assert call.headers["X-Trace"] == "abc-123"
    assert call.headers["Poulpe-Job-Id"] == "post-json"
    assert call.headers["Poulpe-Attempt"] == "1"
    assert call.headers["User-Agent"].startswith("poulpe/")


def test_a_json_string_params_is_sent_as_written(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="put-str", method="PUT", name=fresh_target.url("/echo"), params='{"a": [1, 2]}')

    assert result(client, "put-str")["status"] == "succeeded"
    [call] = fresh_target.calls_for("put-str")
    assert call.method == "PUT"
    assert call.body == '{"a": [1, 2]}'


def test_a_post_with_empty_params_is_sent_without_a_body(client: httpx.Client, fresh_target: Target) -> None:
    """The Rust poulpe's clients send `"params": ""` for a POST that has nothing to say: an empty body."""
    answer = client.post(
        "/task_in_queue",
        content=b'{"id": "post-empty", "method": "POST", "name": "%s", "params": ""}' % fresh_target.url().encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.text

    assert result(client, "post-empty")["status"] == "succeeded"
    [call] = fresh_target.calls_for("post-empty")
    assert (call.method, call.body) == ("POST", "")
    assert "Content-Type" not in call.headers


def test_wait_on_submit_answers_with_the_result(client: httpx.Client, fresh_target: Target) -> None:
    answer = submit(client, id="waited", method="POST", name=fresh_target.url("/echo"), params={"x": 1}, wait=20)

    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["id"] == "waited"
    assert done["status"] == "succeeded"
    assert done["result"]["status_code"] == 200
    assert json.loads(done["result"]["body"])["body"] == '{"x":1}'
    assert done["started_at"] <= done["finished_at"]
    assert len(fresh_target.calls_for("waited")) == 1


def test_wait_that_runs_out_answers_202_timeout(client: httpx.Client, fresh_target: Target) -> None:
    answer = submit(client, id="slowpoke", method="GET", name=fresh_target.url("/slow", ms=2500), wait=0.3)

    assert answer.status_code == 202, answer.text
    state = answer.json()
    assert state["result"] == "Timeout"
    assert state["id"] == "slowpoke"
    assert state["status"] in ("queued", "running")
    # the job goes on regardless and the user can pick up the result later
    done = result(client, "slowpoke")
    assert done["status"] == "succeeded"
    assert done["result"]["body"] == "ok"


def test_long_poll_that_runs_out_answers_202_with_the_current_state(client: httpx.Client, target: Target) -> None:
    accepted(client, id="later", method="GET", name=target.url("/echo"), delay=30)

    answer = client.get("/task_resp/later", params={"timeout": 0.3})
    assert answer.status_code == 202
    assert answer.json()["status"] == "scheduled"
    assert client.get("/task_resp/nobody-knows", params={"timeout": 0.3}).status_code == 404


def test_a_duplicate_id_runs_once(client: httpx.Client, fresh_target: Target) -> None:
    job = {"id": "only-once", "method": "GET", "name": fresh_target.url("/echo"), "params": "n=1"}
    first = submit(client, **job)
    assert first.status_code == 202
    result(client, "only-once")

    for _ in range(2):
        again = submit(client, **{**job, "params": "n=2"})
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json()["id"] == "only-once"
        assert again.json()["status"] == "succeeded"

    [call] = fresh_target.calls_for("only-once")
    assert call.query == {"n": "1"}  # the first submission is the job; the others changed nothing


def test_a_duplicate_id_submitted_concurrently_runs_once(proc: ServedPoulpe, fresh_target: Target) -> None:
    job = {"id": "racing", "method": "GET", "name": fresh_target.url("/slow", ms=300)}

    def post(_: int) -> httpx.Response:
        with proc.client() as client:
            return submit(client, **job)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(post, range(3)))

    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 202], [a.text for a in answers]
    assert [a.json().get("duplicate") for a in answers if a.status_code == 200] == [True, True]
    with proc.client() as client:
        assert result(client, "racing")["status"] == "succeeded"
        # a late duplicate, while nothing runs any more, still does not run it again
        assert submit(client, **job).json()["duplicate"] is True
    assert fresh_target.count_by_job_id()["racing"] == 1


def test_a_batch_with_two_bad_jobs_runs_the_48_others(client: httpx.Client, fresh_target: Target) -> None:
    jobs: list[dict[str, object]] = [
        {"id": f"batch-{n:02d}", "method": "POST", "name": fresh_target.url("/echo"), "params": {"n": n}}
        for n in range(50)
    ]
    jobs[7] = {"id": "batch-07", "method": "FETCH", "name": fresh_target.url("/echo")}
    jobs[31] = {"id": "batch-31", "method": "GET", "name": "ftp://example.com/file"}

    answer = client.post("/task_in_queue", json=jobs)

    assert answer.status_code == 207, answer.text
    slots = answer.json()
    assert len(slots) == 50
    assert slots[7]["result"] == "Fail" and slots[7]["field"] == "method"
    assert slots[31]["result"] == "Fail" and slots[31]["field"] == "name"
    assert slots[7]["error"] and slots[31]["error"]
    good = [n for n in range(50) if n not in (7, 31)]
    for n in good:
        assert slots[n]["result"] == "OK" and slots[n]["id"] == f"batch-{n:02d}", slots[n]

    for n in good:
        done = result(client, f"batch-{n:02d}")
        assert done["status"] == "succeeded"
        assert json.loads(json.loads(done["result"]["body"])["body"]) == {"n": n}
    seen = fresh_target.count_by_job_id()
    assert {job_id: seen[job_id] for job_id in seen if job_id.startswith("batch-")} == {
        f"batch-{n:02d}": 1 for n in good
    }
    # the bad slots were not stored
    assert client.get("/jobs/batch-07").status_code == 404
    assert client.get("/jobs/batch-31").status_code == 404


def test_kingtask_rpc_example_adds_two_numbers(client: httpx.Client, fresh_target: Target) -> None:
    answer = submit(client, method="POST", name=fresh_target.url("/sum"), params={"a": 132, "b": 75}, wait=20)

    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "succeeded"
    assert done["result"]["status_code"] == 200
    assert done["result"]["body"] == "207"
    # no id given: poulpe made one, and the target was told it
    assert [call.job_id for call in fresh_target.calls] == [done["id"]]


def test_a_target_error_is_a_failed_attempt_with_the_answer_kept(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="teapot", method="GET", name=fresh_target.url("/status/418"), retry={"max": 0})

    done = result(client, "teapot")
    assert done["status"] == "dead"
    assert done["result"]["status_code"] == 418
    assert done["result"]["body"] == "status 418"
    assert "418" in done["error"]
    eventually(lambda: len(fresh_target.calls_for("teapot")) == 1)
