"""easyTask users keep their clients and workers: tasks put, fetched, updated and listed through its own routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import result
from tests.poulpe_process import Poulpe


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poulpe]:
    proc = Poulpe(tmp_path_factory.mktemp("easytask")).start()
    yield proc
    proc.stop()


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
    assert ok(client.get("/sayhi", params={"type": kind, "name": name})) == "OK"
    handled: list[dict[str, Any]] = []
    while True:
        assert ok(client.get("/beat", params={"type": kind, "name": name})) == "OK"
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
    assert ok(client.get("/newtype", params={"name": "sums"})) == "OK"
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
        ("PUT", "/api/putask/t", {"json": {"task_info": 1, "colour": 1}}, "colour"),
        ("PUT", "/api/putask/t", {"json": {"task_type": "other"}}, "task_type"),
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
        ("POST", "/updatetask", {"json": {"id": 1}}, "stat"),
        ("POST", "/updatetask", {"json": {"stat": 3}}, "id"),
        ("POST", "/updatetask", {"json": {"id": "one", "stat": 3}}, "id"),
        ("POST", "/updatetask", {"json": {"id": 1, "stat": 7}}, "stat"),
        ("POST", "/updatetask", {"json": {"id": 1, "stat": 3, "remark": 5}}, "remark"),
        ("POST", "/updatetask", {"json": {"id": 123456, "stat": 3}}, "no task"),
        ("POST", "/updatetask", {"data": {"id": "1", "stat": "3", "x": "y"}}, "x"),
        ("GET", "/sayhi", {"params": {"type": "t"}}, "name"),
        ("GET", "/beat", {"params": {"name": "w"}}, "type"),
        ("GET", "/newtype", {"params": {"name": "no/slash"}}, "type"),
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
