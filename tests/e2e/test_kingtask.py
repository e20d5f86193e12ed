"""kingtask users point their clients at poulpe: its README's examples, sent as it sends them, answer as it did."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import copy_programs
from tests.e2e.helpers import eventually, result
from tests.e2e.raw_http import curl, exchange
from tests.poulpe_process import Poulpe, free_port
from tests.target import Target


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poulpe]:
    home = tmp_path_factory.mktemp("kingtask")
    folder = copy_programs(home / "bin")
    proc = Poulpe(home / "p", "--workers", "2", "--exec_dir", str(folder)).start()
    yield proc
    proc.stop()


def task_result(client: httpx.Client, uuid: str) -> dict[str, object]:
    """kingtask's GET /api/v1/task/result/{uuid}, asked until the result exists (as its clients do)."""

    def ask() -> dict[str, object] | None:
        answer = client.get(f"/api/v1/task/result/{uuid}")
        assert answer.status_code == 200, answer.text
        body: dict[str, object] = answer.json()
        return body if body["is_result_exist"] == 1 else None

    return eventually(ask)


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def test_the_readme_script_example_answers_46(client: httpx.Client) -> None:
    # http POST 127.0.0.1:9595/api/v1/task bin_name="example" args="12 34"
    answer = client.post("/api/v1/task", json={"bin_name": "example", "args": "12 34"})
    assert answer.status_code == 200, answer.text
    uuid = answer.json()
    assert isinstance(uuid, str)
    assert task_result(client, uuid) == {"is_result_exist": 1, "is_success": 1, "message": "46"}
    # the same task through poulpe's own routes
    assert result(client, uuid)["result"]["exit_code"] == 0  # type: ignore[index]


def test_the_readme_rpc_example_answers_207(client: httpx.Client, target: Target) -> None:
    # http POST 127.0.0.1:9595/api/v1/task/rpc method="POST" url="http://127.0.0.1:1323/sum" args='{"a":132,"b":75}'
    answer = client.post(
        "/api/v1/task/rpc", json={"method": "POST", "url": target.url("/sum"), "args": '{"a":132,"b":75}'}
    )
    assert answer.status_code == 200, answer.text
    assert task_result(client, answer.json()) == {"is_result_exist": 1, "is_success": 1, "message": "207"}


def test_numbers_as_strings_a_start_time_and_a_retry_schedule(client: httpx.Client) -> None:
    start = time.time() + 1
    answer = client.post(
        "/api/v1/task/script",
        json={
            "bin_name": "example",
            "args": "12 oops",
            "start_time": str(int(start) + 1),
            "time_interval": "0.2 0.2",
            "max_run_time": "5",
        },
    )
    assert answer.status_code == 200, answer.text
    uuid = answer.json()
    pending = client.get(f"/api/v1/task/result/{uuid}").json()
    assert pending == {"is_result_exist": 0, "is_success": 0, "message": ""}
    done = task_result(client, uuid)
    assert done == {
        "is_result_exist": 1,
        "is_success": 0,
        "message": 'err:strconv.ParseInt: parsing "oops": invalid syntax',
    }
    job = result(client, uuid)
    assert job["status"] == "dead" and job["attempts"] == 3  # one try and one retry per interval
    assert job["started_at"] >= int(start) + 1  # type: ignore[operator]


def test_the_counts_after_a_mix_of_successes_and_failures(tmp_path: Path, exec_dir: Path, target: Target) -> None:
    proc = Poulpe(tmp_path / "p", "--exec_dir", str(exec_dir)).start()
    try:
        with proc.client() as client:
            day = today()
            assert client.get(f"/api/v1/task/result/success/{day}").json() == 0
            good = [
                client.post("/api/v1/task/script", json={"bin_name": "example", "args": f"1 {n}"}) for n in range(3)
            ]
            bad = [client.post("/api/v1/task/script", json={"bin_name": "example", "args": "x y"}) for _ in range(2)]
            rpc = client.post("/api/v1/task/rpc", json={"method": "GET", "url": target.url("/status/500")})
            later = client.post("/api/v1/task/script", json={"bin_name": "example", "start_time": time.time() + 3600})
            for answer in [*good, *bad, rpc]:
                task_result(client, answer.json())
            assert client.get(f"/api/v1/task/result/success/{day}").json() == 3
            assert client.get(f"/api/v1/task/result/failure/{day}").json() == 3
            assert client.get("/api/v1/task/result/success/2015-10-30").json() == 0
            assert client.get("/api/v1/task/count/undo").json() == 1
            assert client.get(f"/api/v1/task/result/{later.json()}").json()["is_result_exist"] == 0
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/v1/task/script", {}, "bin_name is required"),
        ("/api/v1/task/script", {"bin_name": "nope"}, "bin_name"),
        ("/api/v1/task/script", {"bin_name": "../example"}, "bin_name"),
        ("/api/v1/task/script", {"bin_name": 12}, "bin_name must be a string"),
        ("/api/v1/task/script", {"bin_name": "example", "args": {"a": 1}}, "args"),
        ("/api/v1/task/script", {"bin_name": "example", "start_time": "tomorrow"}, "start_time must be a number"),
        ("/api/v1/task/script", {"bin_name": "example", "start_time": -5}, "start_time"),
        ("/api/v1/task/script", {"bin_name": "example", "time_interval": "60 soon"}, "time_interval"),
        ("/api/v1/task/script", {"bin_name": "example", "time_interval": "-1"}, "time_interval"),
        ("/api/v1/task/script", {"bin_name": "example", "max_run_time": 0}, "max_run_time"),
        ("/api/v1/task/script", {"bin_name": "example", "max_run_time": "NaN"}, "max_run_time"),
        ("/api/v1/task/script", {"bin_name": "example", "uuid": "a b"}, "uuid"),
        ("/api/v1/task/script", [1, 2], "JSON object"),
        ("/api/v1/task/rpc", {"method": "POST"}, "url is required"),
        ("/api/v1/task/rpc", {"method": "FETCH", "url": "http://127.0.0.1/x"}, "method must be one of"),
        ("/api/v1/task/rpc", {"method": "POST", "url": "ftp://x/y"}, "url"),
        ("/api/v1/task/rpc", {"method": "POST", "url": "http://127.0.0.1/x", "args": "{oops"}, "args must be a JSON"),
        ("/api/v1/task/rpc", {"method": "GET", "url": "http://127.0.0.1/x", "args": "[1]"}, "args"),
    ],
)
def test_bad_input_answers_403_with_a_message_and_makes_no_job(
    client: httpx.Client, path: str, body: object, says: str
) -> None:
    before = client.get("/jobs", params={"size": 1}).json()["total"]
    answer = client.post(path, json=body)
    assert answer.status_code == 403, answer.text
    assert says in answer.json()
    assert client.get("/jobs", params={"size": 1}).json()["total"] == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"bin_name=example&args", "application/x-www-form-urlencoded"),
        (b"bin_name=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"\x00\x01junk", "text/plain"),
    ],
)
def test_junk_bodies_answer_403(client: httpx.Client, content: bytes, content_type: str) -> None:
    answer = client.post("/api/v1/task/script", content=content, headers={"Content-Type": content_type})
    assert answer.status_code == 403, answer.text
    assert isinstance(answer.json(), str)


def test_a_form_body_works_like_json(client: httpx.Client) -> None:
    answer = client.post("/api/v1/task/script", data={"bin_name": "example", "args": "40 2", "max_run_time": "5"})
    assert answer.status_code == 200, answer.text
    assert task_result(client, answer.json())["message"] == "42"


@pytest.mark.parametrize("day", ["2015-13-01", "2015-02-30", "yesterday", "2015-1-1", "\uff12\uff10\uff11\uff15-10-30"])
def test_malformed_dates_answer_403(client: httpx.Client, day: str) -> None:
    answer = client.get(f"/api/v1/task/result/failure/{day}")
    assert answer.status_code == 403 and "YYYY-MM-DD" in answer.json()


def test_an_unknown_uuid_answers_403(client: httpx.Client) -> None:
    answer = client.get("/api/v1/task/result/db3e0b22-a249-4ed2-9532-fc6318ccd321")
    assert answer.status_code == 403 and "no task" in answer.json()


def test_a_field_given_twice_is_refused(client: httpx.Client) -> None:
    body = b'{"bin_name": "example", "args": "1 2", "bin_name": "echoargs"}'
    answer = client.post("/api/v1/task/script", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 403 and "bin_name is given twice" in answer.json()


def test_a_program_that_writes_its_error_on_stderr_and_exits_0_has_failed(client: httpx.Client) -> None:
    """kingtask's example.go prints its errors on stderr and returns: exit code 0. kingtask judged it by stderr."""
    answer = client.post("/api/v1/task/script", json={"bin_name": "example", "args": "12", "time_interval": "0.1"})
    assert answer.status_code == 200, answer.text
    done = task_result(client, answer.json())
    assert done == {"is_result_exist": 1, "is_success": 0, "message": "args count must be two"}
    job = result(client, answer.json())
    assert job["status"] == "dead" and job["attempts"] == 2  # retried on time_interval, as any failure
    assert job["result"]["exit_code"] == 0  # type: ignore[index]
    assert job["error"] == "the program wrote on stderr: args count must be two"


def test_trailing_newlines_are_trimmed_from_the_message(client: httpx.Client) -> None:
    """A program printing "57\n" (Go's fmt.Println) answered "57" in kingtask."""
    answer = client.post("/api/v1/task/script", json={"bin_name": "println", "args": "12 45"})
    assert answer.status_code == 200, answer.text
    assert task_result(client, answer.json()) == {"is_result_exist": 1, "is_success": 1, "message": "57"}
    assert result(client, answer.json())["result"]["stdout"] == "57\n"  # type: ignore[index]


def test_curl_d_with_json_is_read_as_json(proc: Poulpe, client: httpx.Client) -> None:
    """curl -X POST -d '{"bin_name": "example", "args": "40 2"}' .../api/v1/task/script: -d labels it a form."""
    request = curl(proc.port, "POST", "/api/v1/task/script", b'{"bin_name": "example", "args": "40 2"}')
    answer = exchange(proc.port, request)
    assert answer.status == 200, answer.body
    assert task_result(client, answer.json())["message"] == "42"


def test_fields_kingtask_does_not_use_are_ignored(client: httpx.Client) -> None:
    body = {"bin_name": "example", "args": "1 2", "index": 0, "task_type": 1, "priority": "high"}
    answer = client.post("/api/v1/task/script", json=body)
    assert answer.status_code == 200, answer.text
    assert task_result(client, answer.json())["message"] == "3"


def test_the_go_broker_client_connects_to_kingtask_addr(tmp_path: Path, exec_dir: Path) -> None:
    """POULPE_KINGTASK_ADDR as a deployment sets it; the raw bytes of BrokerClient.Delay, GetResult and Close."""
    port = free_port()
    env = {"POULPE_KINGTASK_ADDR": f"127.0.0.1:{port}"}
    proc = Poulpe(tmp_path / "p", "--exec_dir", str(exec_dir), env=env).start()
    try:
        uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
        task = {"uuid": uuid, "bin_name": "example", "args": "12 45", "start_time": int(time.time())}
        delay = b"\x01" + json.dumps({**task, "time_interval": "", "index": 0}, separators=(",", ":")).encode()
        get_result = b"\x02" + json.dumps({"key": f"r_{uuid}"}, separators=(",", ":")).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(delay)
            assert sock.recv(512) == b'{"status":0,"message":""}'

            def ask() -> bytes | None:
                sock.sendall(get_result)
                reply = sock.recv(512)
                return reply if reply.startswith(b'{"is_result_exist":1') else None

            assert eventually(ask) == b'{"is_result_exist":1,"is_success":1,"message":"57"}'
            sock.sendall(b"\x03")
            assert sock.recv(512) == b""  # Close: poulpe hangs up
        with proc.client() as client:  # the same task on the HTTP routes
            assert client.get(f"/api/v1/task/result/{uuid}").json()["message"] == "57"
        with pytest.raises(OSError):  # bound to the address given, not to every interface
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
    finally:
        proc.stop()
