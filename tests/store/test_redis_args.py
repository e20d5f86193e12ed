"""The store's scripts get all their arguments in one MessagePack array, and see exactly the text redis-py would have
sent them one by one: numbers as redis-py writes them, bytes as their text. Every script unpacks them."""

from __future__ import annotations

import enum

import msgspec
import pytest

from poulpe.job import Job, Method, Status
from poulpe.store.redis import RedisStore
from poulpe.store.redis_args import ARGS, packed
from poulpe.store.redis_link import SCRIPTS
from tests.redis_server import RedisServer

ECHO = "return ARGV"


class Color(enum.StrEnum):
    RED = "red"


def test_every_script_of_the_store_unpacks_its_arguments() -> None:
    assert [name for name, text in SCRIPTS.items() if not text.startswith(ARGS)] == []
    assert [name for name, text in SCRIPTS.items() if text.count(ARGS) != 1] == []


def test_a_script_sees_the_text_redis_py_would_have_sent(redis_server: RedisServer) -> None:
    args = ["a job", "é" * 300, 12, 1_700_000_000.123456, 0.1, b"raw \xc3\xa9", Color.RED, "", "x" * 70_000]
    client = redis_server.client()
    one_by_one = client.eval(ECHO, 0, "{p}:", *args)
    together = client.eval(ARGS + ECHO, 0, packed("{p}:", args))
    assert together == one_by_one
    assert together[3:6] == [b"12", b"1700000000.123456", b"0.1"]


def test_a_batch_of_many_jobs_goes_whole(redis_server: RedisServer) -> None:
    args = [f"j{i}" for i in range(20_000)]  # more than Lua's unpack() takes at once
    count = redis_server.client().eval(ARGS + "return #ARGV", 0, packed("{p}:", args))
    assert count == 20_001


@pytest.mark.parametrize("wrong", [None, True, object()])
def test_what_redis_py_would_refuse_is_refused(wrong: object) -> None:
    with pytest.raises(TypeError):
        packed("{p}:", ["fine", wrong])


def test_text_goes_as_msgpack_str_not_bin() -> None:
    """Redis's cmsgpack reads no `bin`: bytes go as text."""
    assert msgspec.msgpack.decode(packed("{p}:", [b"abc"]), type=list[str]) == ["{p}:", "abc"]


def test_the_stores_own_writes_are_text_already() -> None:
    """Adds and saves, the calls of every job, go without a conversion per argument."""
    store = RedisStore("redis://127.0.0.1:1/0")
    job = Job(id="j1", method=Method.GET, name="http://127.0.0.1/x", seq=12, run_at=1.5, created_at=1.0, key="k")
    job.begin_attempt(0, "node", 2.0)
    job.end_attempt(True, None, 3.0)
    job.status, job.finished_at = Status.SUCCEEDED, 3.0
    args = [*store._add_args([job]), *store._save_args(job)]
    assert {type(a) for a in args} == {str}
