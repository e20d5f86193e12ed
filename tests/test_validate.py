"""The job validator: every field and limit, each error naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poulpe.errors import BadRequest
from poulpe.job import Method, RetryPolicy, Status
from poulpe.validate import Limits, Submission, parse_body

LIMITS = Limits(workers=4)
URL = "http://127.0.0.1:9/x"


def one(body: object, limits: Limits = LIMITS) -> Submission:
    parsed = parse_body(json.dumps(body).encode(), limits, now=1000.0)
    assert isinstance(parsed, Submission)
    return parsed


def field_of(body: object | bytes, limits: Limits = LIMITS) -> str | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BadRequest) as caught:
        parse_body(raw, limits, now=1000.0)
    return caught.value.field


def test_a_minimal_job_gets_an_id_and_runs_now() -> None:
    sub = one({"method": "get", "name": URL})
    assert sub.job.method is Method.GET and len(sub.job.id) == 36
    assert sub.job.status is Status.QUEUED and sub.job.run_at == 1000.0


def test_delay_and_at_set_the_due_time() -> None:
    assert one({"method": "GET", "name": URL, "delay": 5}).job.run_at == 1005.0
    assert one({"method": "GET", "name": URL, "at": 2000}).job.status is Status.SCHEDULED
    assert one({"method": "GET", "name": URL, "at": "1970-01-01T01:00:00+01:00"}).job.run_at == 1000.0  # past: now
    assert one({"method": "GET", "name": URL, "at": "2030-01-01T00:00:00Z"}).job.run_at == 1893456000.0


def test_cc_and_retry_are_parsed() -> None:
    job = one({"method": "GET", "name": URL, "cc": "3, 1 1", "retry": {"intervals": [60, 600]}}).job
    assert job.cc == (1, 3)
    assert job.retry == RetryPolicy(intervals=(60.0, 600.0)) and job.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": URL}, "method"),
        ({"method": "GET"}, "name"),
        ({"method": "FETCH", "name": URL}, "method"),
        ({"method": "GET", "name": "ftp://x/y"}, "name"),
        ({"method": "GET", "name": URL, "id": "a b"}, "id"),
        ({"method": "GET", "name": URL, "id": "x" * 129}, "id"),
        ({"method": "GET", "name": URL, "delay": -1}, "delay"),
        ({"method": "GET", "name": URL, "delay": "5"}, "delay"),
        ({"method": "GET", "name": URL, "delay": 1e12}, "delay"),
        ({"method": "GET", "name": URL, "delay": 1, "at": 5}, "at"),
        ({"method": "GET", "name": URL, "at": "tomorrow"}, "at"),
        ({"method": "GET", "name": URL, "at": "2030-01-01T00:00:00"}, "at"),
        ({"method": "GET", "name": URL, "cc": "4"}, "cc"),
        ({"method": "GET", "name": URL, "cc": "-1"}, "cc"),
        ({"method": "GET", "name": URL, "wait": 301}, "wait"),
        ({"method": "GET", "name": URL, "timeout": 0}, "timeout"),
        ({"method": "GET", "name": URL, "retry": {"max": 1000}}, "retry.max"),
        ({"method": "GET", "name": URL, "retry": {"maxx": 1}}, "retry.maxx"),
        ({"method": "GET", "name": URL, "retry": {"intervals": [1], "max": 2}}, "retry.intervals"),
        ({"method": "GET", "name": URL, "headers": {"X-A": "1\r\nEvil: 1"}}, "headers"),
        ({"method": "GET", "name": URL, "headers": {"Poulpe-Job-Id": "x"}}, "headers"),
        ({"method": "GET", "name": URL, "params": [1, 2]}, "params"),
        ({"method": "POST", "name": URL, "params": "{not json"}, "params"),
        ({"method": "GET", "name": URL, "callback": "javascript:alert(1)"}, "callback"),
        ({"method": "GET", "name": URL, "meta": [1]}, "meta"),
        ({"method": "GET", "name": URL, "meta": {"x": "y" * 17000}}, "meta"),
        ({"method": "GET", "name": URL, "surprise": 1}, "surprise"),
        ({"method": "EXEC", "name": "add"}, "method"),
        ({"method": "MAIL_TO", "name": "a@example.com"}, "method"),
        ({"method": "QUEUE", "name": "bad type!"}, "name"),
    ],
)
def test_each_bad_field_is_named(body: dict[str, object], field: str) -> None:
    assert field_of(body) == field


def test_exec_checks_the_program_and_its_arguments(tmp_path: Path) -> None:
    program = tmp_path / "add"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    limits = Limits(workers=2, exec_dir=tmp_path)
    assert one({"method": "EXEC", "name": "add", "params": "12 34"}, limits).job.params == "12 34"
    assert field_of({"method": "EXEC", "name": "../add"}, limits) == "name"
    assert field_of({"method": "EXEC", "name": "/bin/sh"}, limits) == "name"
    assert field_of({"method": "EXEC", "name": "missing"}, limits) == "name"
    assert field_of({"method": "EXEC", "name": "add", "params": "'unbalanced"}, limits) == "params"


def test_allow_hosts_is_checked_at_intake() -> None:
    limits = Limits(allow_hosts=("127.0.0.1",))
    assert one({"method": "GET", "name": URL}, limits).job.name == URL
    assert field_of({"method": "GET", "name": "http://example.com/"}, limits) == "name"


def test_a_batch_answers_per_slot() -> None:
    body = [{"method": "GET", "name": URL}, {"method": "GET"}, {"method": "GET", "name": URL, "id": "x"}]
    slots = parse_body(json.dumps(body).encode(), LIMITS)
    assert isinstance(slots, list)
    assert isinstance(slots[0], Submission) and isinstance(slots[2], Submission)
    assert isinstance(slots[1], BadRequest) and slots[1].field == "name"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"nope",
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b'{"method": "GET", "name": ' + b"[" * 5000,
        b"[]",
        b"42",
        json.dumps([{"method": "GET", "name": URL}] * 1001).encode(),
    ],
)
def test_malformed_bodies_are_refused_without_a_field(raw: bytes) -> None:
    assert field_of(raw) in (None, "name")


def test_generated_ids_are_uuid4_in_their_usual_form() -> None:
    import uuid

    from poulpe.validate import new_id

    seen = set()
    for _ in range(2000):  # more than one pool of random bytes
        text = new_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 2000


def test_a_batchs_generated_ids_are_uuid4s_given_in_ascending_order_beside_the_ids_it_gives() -> None:
    """docs/design.md, "Ids": a batch's ids are made together and handed out sorted, so its rows fill the id index
    in key order; the ids the submitter gives are kept as given."""
    import uuid

    body = [{"method": "GET", "name": URL} for _ in range(300)]
    body[10]["id"], body[20]["id"] = "zz-given", "aa-given"
    slots = parse_body(json.dumps(body).encode(), LIMITS)
    assert isinstance(slots, list) and all(isinstance(slot, Submission) for slot in slots)
    ids = [slot.job.id for slot in slots if isinstance(slot, Submission)]
    assert ids[10] == "zz-given" and ids[20] == "aa-given"
    generated = ids[:10] + ids[11:20] + ids[21:]
    assert generated == sorted(generated) and len(set(generated)) == 298
    for text in generated:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize(
    ("name", "extra", "field"),
    [
        ("Ann <a@example.org> junk", {}, "name"),
        ("é@example.org", {}, "name"),
        ("a@example.org", {"title": "hello\nBcc: spy@example.org"}, "params.title"),
        ("a@example.org", {"cc": "b@example.org, c@"}, "params.cc"),
        ("a@example.org", {"from_addr": "x@example.org, y@example.org"}, "params.from_addr"),
    ],
)
def test_mail_addresses_and_title_are_checked(name: str, extra: dict[str, str], field: str) -> None:
    limits = Limits(mail_enabled=True)
    params = {"from_addr": "Zoë Shop <shop@example.com>", "title": "t", "body": "b"}
    assert one({"method": "MAIL_TO", "name": "Zoë <z@example.org>", "params": params}, limits).job.name
    assert field_of({"method": "MAIL_TO", "name": name, "params": {**params, **extra}}, limits) == field


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_an_empty_params_string_means_no_body_as_the_rust_poulpe_sent(method: str) -> None:
    assert one({"method": method, "name": URL, "params": ""}).job.params is None
    assert one({"method": method, "name": URL, "params": "  "}).job.params is None
    assert field_of({"method": method, "name": URL, "params": "not json"}) == "params"


def test_a_url_refused_once_is_refused_again_naming_each_field_it_appears_in() -> None:
    # the check of a URL is remembered (a batch's jobs mostly call a few URLs): the answer still names its field
    limits = Limits(allow_hosts=("127.0.0.1",))
    for _ in range(2):
        assert field_of({"method": "GET", "name": "http://other.example/x"}, limits) == "name"
        assert field_of({"method": "GET", "name": URL, "callback": "http://other.example/x"}, limits) == "callback"
        assert field_of({"method": "GET", "name": "http://h:99999/x"}) == "name"
    with pytest.raises(BadRequest, match=r"host {x} is not in --allow_hosts"):
        parse_body(json.dumps({"method": "GET", "name": "http://{x}/"}).encode(), limits)


def test_optional_fields_left_out_keep_their_defaults() -> None:
    job = one({"method": "GET", "name": URL}).job
    assert (job.params, job.cc, job.timeout, job.retry, job.headers, job.callback, job.meta) == (
        None, (), None, None, None, None, None,
    )  # fmt: skip
    assert (job.key, job.priority, job.traceparent) == (None, 0, None)
    given = one({"method": "get", "name": URL, "params": {"a": 1}, "cc": "1", "priority": 3, "key": "k"}).job
    assert (given.method, given.params, given.cc, given.priority, given.key) == (Method.GET, {"a": 1}, (1,), 3, "k")
