"""easyTask users keep their clients and workers: tasks put, fetched, updated and listed through its own routes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import result
from tests.e2e.raw_http import Answer, curl, exchange, go_client
from tests.serving import ServedPoulpe

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served()


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 0, body
    return body.get("data")


def put(client: httpx.Client, kind: str, **body: Any) -> int:
    """As easyTask's README: curl -X PUT -d '{"rid": ..., "task_type": ..., "task_info": {...}}' /api/putask/<type>."""
    record_id = ok(client.put(f"/api/putask/{kind}", json=body))
    assert isinstance(record_id, int)
    return record_id


def worker_loop(client: httpx.Client, kind: str, name: str) -> list[dict[str, Any]]:
    """An easyTask worker: say hi, then beat, fetch and report until nothing is left. task_info {"a", "b"}: the sum
    is the remark; a task whose "a" is not a number is reported as an error. Updates alternate JSON and form."""
    assert client.get("/sayhi", params={"type": kind, "name": name}).text == "OK"
    handled: list[dict[str, Any]] = []
    while True:
        assert client.get("/beat", params={"type": kind, "name": name}).text == "OK"
        tasks = ok(client.get("/querytask", params={"type": kind, "name": name, "num": 2}))
        if not tasks:
            return handled
        for task in tasks:
            info = task["task_info"]
            assert task["stat"] == 2 and task["client"] == name
            if isinstance(info.get("a"), int):
                update = {"id": task["id"], "stat": 3, "remark": str(info["a"] + info["b"])}
            else:
                update = {"id": task["id"], "stat": -1, "remark": "a is not a number"}
            if len(handled) % 2:
                ok(client.post("/updatetask", data={k: str(v) for k, v in update.items()}))
            else:
                ok(client.post("/updatetask", json=update))
            handled.append(task)


def test_an_easytask_worker_processes_every_task(client: httpx.Client) -> None:
    assert client.get("/newtype", params={"name": "sums"}).text == "OK"
    ids = [put(client, "sums", rid=str(n), task_type="sums", task_info={"a": n, "b": 10}) for n in range(4)]
    bad = ok(
        client.put(
            "/api/putask/sums",
            data={"rid": "99", "task_info": '{"a": "x", "b": 1}'},  # a form body, task_info as JSON text
        )
    )
    assert ids == sorted(ids) and bad > ids[-1]

    handled = worker_loop(client, "sums", "工兵1")
    assert sorted(task["id"] for task in handled) == [*ids, bad]

    listed = ok(client.get("/querytask", params={"type": "sums", "pageno": 1, "pagesize": 10}))
    by_id = {task["id"]: task for task in listed}
    assert [by_id[i]["stat"] for i in ids] == [3, 3, 3, 3]
    assert [by_id[i]["remark"] for i in ids] == ["10", "11", "12", "13"]
    assert by_id[ids[0]]["rid"] == "0" and by_id[ids[0]]["task_info"] == {"a": 0, "b": 10}
    assert by_id[bad]["stat"] == 1 and by_id[bad]["remark"] == "a is not a number"  # retried by its policy
    assert by_id[ids[0]]["add_time"].endswith("Z")

    done = result(client, by_id[ids[2]]["tid"])
    assert done["status"] == "succeeded" and done["remark"] == "12" and done["method"] == "QUEUE"
    worker = next(w for w in client.get("/workers").json()["workers"] if w["type"] == "sums")
    assert worker["name"] == "工兵1" and worker["jobs"] == []

    page2 = ok(client.get("/querytask", params={"type": "sums", "pageno": 2, "pagesize": 3}))
    assert len(page2) == 2


def test_an_update_by_tid_or_by_another_worker(client: httpx.Client) -> None:
    put(client, "tids", task_info="plain text")
    [task] = ok(client.get("/querytask", params={"type": "tids", "name": "w1", "num": 5}))
    assert task["task_info"] == "plain text"
    taken = client.post("/updatetask", json={"tid": task["tid"], "stat": 3, "name": "w2"})
    assert taken.status_code == 409 and taken.json()["code"] == -1
    ok(client.post("/updatetask", json={"tid": task["tid"], "stat": "3"}))
    again = client.post("/updatetask", json={"id": task["id"], "stat": 3})
    assert again.status_code == 404 and again.json()["code"] == -1


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "says"),
    [
        ("PUT", "/api/putask/bad%20type", {"json": {"task_info": 1}}, "type"),
        ("PUT", "/api/putask/t", {"json": {"rid": [1]}}, "rid"),
        ("PUT", "/api/putask/t", {"json": {"tid": "a b"}}, "tid"),
        ("PUT", "/api/putask/t", {"json": {"callback": "ftp://x"}}, "callback"),
        ("PUT", "/api/putask/t", {"content": b"{oops", "headers": {"Content-Type": "application/json"}}, "JSON"),
        (
            "PUT",
            "/api/putask/t",
            {"content": b"a=1&&=&", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            "form",
        ),
        (
            "PUT",
            "/api/putask/t",
            {"content": b"rid=\xff", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            "form",
        ),
        ("GET", "/querytask", {}, "type is required"),
        ("GET", "/querytask", {"params": {"type": "t", "pageno": "x"}}, "pageno"),
        ("GET", "/querytask", {"params": {"type": "t", "pagesize": "0"}}, "size"),
        ("GET", "/querytask", {"params": {"type": "t", "name": "", "num": 1}}, "name"),
        ("GET", "/querytask", {"params": {"type": "t", "name": "w", "num": "0"}}, "num"),
        ("GET", "/querytask", {"params": {"type": "t", "num": "0"}}, "num"),
        ("GET", "/querytask", {"params": {"type": "\U0001f600", "num": "1"}}, "type"),
        ("PUT", "/api/putask/t%C2%A0t", {"json": {"task_info": 1}}, "type"),
        ("PUT", "/api/putask/" + "\u4e0b" * 65, {"json": {"task_info": 1}}, "type"),
        ("PUT", "/api/putask/t", {"content": b"{oops", "headers": {"Content-Type": FORM}}, "JSON"),
        ("POST", "/updatetask", {"json": {"id": 1}}, "stat"),
        ("POST", "/updatetask", {"json": {"stat": 3}}, "id"),
        ("POST", "/updatetask", {"json": {"id": "one", "stat": 3}}, "id"),
        ("POST", "/updatetask", {"json": {"id": 1, "stat": 7}}, "stat"),
        ("POST", "/updatetask", {"json": {"id": 1, "stat": 3, "remark": 5}}, "remark"),
        ("POST", "/updatetask", {"json": {"id": 123456, "stat": 3}}, "no task"),
    ],
)
def test_bad_input_answers_code_minus_one(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], says: str
) -> None:
    before = client.get("/jobs", params={"size": 1}).json()["total"]
    answer = client.request(method, path, **kwargs)
    assert 400 <= answer.status_code < 500, answer.text
    body = answer.json()
    assert body["code"] == -1 and says in body["errmsg"], body
    assert client.get("/jobs", params={"size": 1}).json()["total"] == before


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/sayhi", {"type": "t", "name": "w"}),
        ("/beat", {"type": "t", "name": "w"}),
        ("/newtype", {"name": "t"}),
    ],
)
def test_sayhi_beat_and_newtype_answer_the_bare_text_ok(client: httpx.Client, path: str, query: dict[str, str]) -> None:
    answer = client.get(path, params=query)
    assert answer.status_code == 200 and answer.content == b"OK"
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("path", "query", "says"),
    [
        ("/sayhi", {"type": "t"}, "name"),
        ("/beat", {"name": "w"}, "type"),
        ("/newtype", {"name": "no/slash"}, "type"),
    ],
)
def test_sayhi_beat_and_newtype_answer_an_error_as_text(
    client: httpx.Client, path: str, query: dict[str, str], says: str
) -> None:
    answer = client.get(path, params=query)
    assert answer.status_code == 400 and says in answer.text
    assert answer.headers["content-type"].startswith("text/plain")


# --- the clients as they really send ---------------------------------------------------------------------------
README_PUT = b"""{
    "rid": "10",
    "task_type": "download",
    "task_info": {
        "rid": "1111",
        "url": "asdlfkjalsdkfjal"
    }
}"""


def easytask_ok(answer: Answer) -> Any:
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["code"] == 0, body
    return body.get("data")


def test_the_readme_curl_lines_are_taken_as_curl_sends_them(proc: ServedPoulpe, client: httpx.Client) -> None:
    """curl -v -X PUT --cookie "gsessionid=MTU0asdf" -d '{...}' .../api/putask/curltype: -d labels the JSON a form."""
    put = curl(proc.port, "PUT", "/api/putask/curltype", README_PUT, cookie="gsessionid=MTU0asdf")
    record_id = easytask_ok(exchange(proc.port, put))
    [task] = ok(client.get("/querytask", params={"type": "curltype", "name": "w", "num": 1}))
    assert task["id"] == record_id and task["rid"] == "10"
    assert task["task_info"] == {"rid": "1111", "url": "asdlfkjalsdkfjal"}
    # the README puts "download" in task_type and posts to .../tasktype: easyTask took the type from the URL
    assert task["task_type"] == "curltype"

    update = f"""{{
    "id": {record_id},
    "stat": 3,
    "remark": "asdfasdfadf"
}}""".encode()
    easytask_ok(exchange(proc.port, curl(proc.port, "POST", "/updatetask", update, cookie="gsessionid=MTU0asdf")))
    done = result(client, task["tid"])
    assert done["status"] == "succeeded" and done["remark"] == "asdfasdfadf"


def test_the_published_go_worker_fetches_with_type_and_num_and_no_name(
    proc: ServedPoulpe, client: httpx.Client
) -> None:
    """easyTask's Go worker asks GET /querytask?type=T&num=1, with no name: a fetch, not a listing."""
    first = put(client, "gofetch", rid="1", task_info={"url": "http://example.invalid/a"})
    second = put(client, "gofetch", rid="2", task_info={"url": "http://example.invalid/b"})
    fetch = go_client(proc.port, "GET", "/querytask?type=gofetch&num=1")

    [task] = easytask_ok(exchange(proc.port, fetch))
    assert task["id"] == first and task["stat"] == 2 and task["client"] == "127.0.0.1"  # handed out, not listed
    ok(client.post("/updatetask", json={"id": first, "stat": 3, "remark": "a.mp4"}))  # its report names no worker
    assert result(client, task["tid"])["remark"] == "a.mp4"

    [following] = easytask_ok(exchange(proc.port, fetch))
    assert following["id"] == second  # the finished one is not handed out again
    assert easytask_ok(exchange(proc.port, fetch)) == []  # the other one is held: nothing is left


def test_the_go_worker_reports_by_posting_back_the_whole_record(proc: ServedPoulpe, client: httpx.Client) -> None:
    """Its report is json.Marshal of the record it fetched, stat and remark changed (the Go struct has no tid), and
    gocommon.PostRequest labels it text/html."""
    put(client, "goreport", rid="1", task_info={"url": "http://example.invalid/a"})
    [task] = ok(client.get("/querytask", params={"type": "goreport", "name": "w1", "num": 1}))

    fields = ("id", "rid", "task_type", "task_info", "stat", "add_time", "update_time", "rapper", "client", "remark")
    report = {name: task[name] for name in fields} | {"stat": 3, "remark": "1.mp4"}
    body = json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode()
    easytask_ok(exchange(proc.port, go_client(proc.port, "POST", "/updatetask", body, "text/html")))
    done = result(client, task["tid"])
    assert done["status"] == "succeeded" and done["remark"] == "1.mp4"


def test_utf8_task_types_work_percent_encoded(proc: ServedPoulpe, client: httpx.Client) -> None:
    """A type named in Chinese, as the README names its workers ("工兵名字"), percent-encoded by the client."""
    kind = "下载"
    encoded = "%E4%B8%8B%E8%BD%BD"
    assert exchange(proc.port, curl(proc.port, "GET", f"/newtype?name={encoded}")).body == b"OK"
    hello = f"/sayhi?type={encoded}&name=%E5%B7%A5%E5%85%B51"
    assert exchange(proc.port, go_client(proc.port, "GET", hello)).body == b"OK"
    record_id = easytask_ok(exchange(proc.port, curl(proc.port, "PUT", f"/api/putask/{encoded}", b'{"rid": "7"}')))
    [task] = easytask_ok(exchange(proc.port, go_client(proc.port, "GET", f"/querytask?type={encoded}&num=5")))
    assert task["id"] == record_id and task["task_type"] == kind

    # the same type through poulpe's own routes: a QUEUE job and a worker's lease
    answer = client.post("/task_in_queue", json={"method": "QUEUE", "name": kind, "params": {"n": 1}})
    assert answer.status_code == 202, answer.text
    leased = client.post(f"/workers/{kind}/lease", json={"worker": "工兵1", "n": 5})
    assert leased.status_code == 200, leased.text
    assert [job["type"] for job in leased.json()["jobs"]] == [kind]
