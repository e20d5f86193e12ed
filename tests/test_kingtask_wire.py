"""kingtask's Go BrokerClient against poulpe's listener, in process on a real SQLite store, byte for byte: each
message is what the client's Delay, GetResult and Close write (one type byte, then json.Marshal's output)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from poulpe.compat import kingtask_wire
from poulpe.compat.kingtask_wire import KingtaskWire
from poulpe.deadletter import DeadLetters
from poulpe.job import Method
from poulpe.manager import JobManager
from poulpe.runners.exec import ExecRunner
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import Limits

UUID = "6ba7b810-9dad-41d1-80b4-00c04fd430c8"
NOT_YET = b'{"is_result_exist":0,"is_success":0,"message":""}'
OK = b'{"status":0,"message":""}'


@pytest.fixture
async def wire(tmp_path: Path, exec_dir: Path) -> AsyncIterator[KingtaskWire]:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    runner = ExecRunner(exec_dir=exec_dir)
    manager = JobManager(store, {Method.EXEC: runner}, DeadLetters(tmp_path / "dead"), workers=2)
    await manager.start()
    listener = KingtaskWire(manager, Limits(exec_dir=exec_dir), "127.0.0.1", 0, idle_s=0.5, frame_s=0.5)
    await listener.start()
    yield listener
    await listener.stop()
    await manager.stop(1)
    await store.close()


def go_json(value: dict[str, Any]) -> bytes:
    """What Go's json.Marshal writes for a struct: fields in order, no spaces."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def delay(uuid: str, bin_name: str, args: str, time_interval: str = "") -> bytes:
    """BrokerClient.Delay(task.NewTaskRequest(bin_name, args, 0, intervals)): start_time is now, index 0."""
    request = {
        "uuid": uuid,
        "bin_name": bin_name,
        "args": args,
        "start_time": int(time.time()),
        "time_interval": time_interval,
        "index": 0,
    }
    return b"\x01" + go_json(request)


def get_result(uuid: str) -> bytes:
    return b"\x02" + go_json({"key": f"r_{uuid}"})


class Client:
    """A raw TCP connection, used as the Go client uses it: write a message, read one reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, wire: KingtaskWire) -> Client:
        return cls(*await asyncio.open_connection(*wire.address))

    async def ask(self, message: bytes) -> bytes:
        self.writer.write(message)
        await self.writer.drain()
        return await self.read()

    async def read(self) -> bytes:
        """One reply: a JSON object, read as the Go client does (one read of at most 512 bytes)."""
        async with asyncio.timeout(10):
            return await self.reader.read(512)

    async def closed(self) -> bool:
        """Whether poulpe closed the connection (EOF or reset), waiting up to 5 s."""
        try:
            async with asyncio.timeout(5):
                return await self.reader.read(1) == b""
        except ConnectionError:
            return True

    async def result(self, uuid: str) -> bytes:
        """GetResult until the result exists, as the seed's mytask.go does after its sleep."""
        deadline = time.monotonic() + 15
        while (reply := await self.ask(get_result(uuid))) == NOT_YET:
            assert time.monotonic() < deadline, "no result within 15 s"
            await asyncio.sleep(0.05)
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_the_seed_mytask_go_gets_57(wire: KingtaskWire) -> None:
    """mytask.go: Delay(NewTaskRequest("example", {"12", "45"}, 0, {5, 8, 9})), GetResult, Close → &{1 1 57}."""
    client = await Client.connect(wire)
    assert await client.ask(delay(UUID, "example", "12 45", "5 8 9")) == OK
    assert await client.result(UUID) == b'{"is_result_exist":1,"is_success":1,"message":"57"}'
    job = await wire.manager.get(UUID)
    assert job is not None and job.source == "kingtask" and job.params == ["12", "45"]
    assert job.retry is not None and job.retry.intervals == (5.0, 8.0, 9.0)
    client.writer.write(b"\x03")  # Close
    assert await client.closed()
    await client.close()


async def test_a_program_writing_on_stderr_has_failed_and_its_message_is_the_stderr(wire: KingtaskWire) -> None:
    client = await Client.connect(wire)
    assert await client.ask(delay(UUID, "example", "12 x")) == OK
    reply = json.loads(await client.result(UUID))
    assert reply == {
        "is_result_exist": 1,
        "is_success": 0,
        "message": 'err:strconv.ParseInt: parsing "x": invalid syntax',
    }
    await client.close()


async def test_a_refused_task_answers_status_1_and_the_connection_goes_on(wire: KingtaskWire) -> None:
    client = await Client.connect(wire)
    refused = json.loads(await client.ask(delay(UUID, "nope", "")))
    assert refused["status"] == 1 and refused["message"].startswith("bin_name: no program named 'nope'")
    assert await client.ask(delay("other-uuid", "example", "1 2")) == OK
    assert json.loads(await client.result("other-uuid"))["message"] == "3"
    await client.close()


async def test_an_unknown_uuid_has_no_result_yet(wire: KingtaskWire) -> None:
    client = await Client.connect(wire)
    assert await client.ask(get_result("db3e0b22-a249-4ed2-9532-fc6318ccd321")) == NOT_YET
    assert await client.ask(b'\x02{"key":"t_x"}') == NOT_YET
    await client.close()


async def test_messages_written_together_are_answered_in_order(wire: KingtaskWire) -> None:
    client = await Client.connect(wire)
    client.writer.write(delay(UUID, "example", "1 1") + get_result("db3e0b22-a249-4ed2-9532-fc6318ccd321"))
    replies = b""
    while replies.count(b"}") < 2:
        chunk = await client.read()
        assert chunk
        replies += chunk
    assert replies == OK + NOT_YET
    await client.close()


async def test_a_long_output_is_cut_to_the_512_bytes_the_go_client_reads(wire: KingtaskWire) -> None:
    (Path(wire.limits.exec_dir or ".") / "long").write_text("#!/bin/sh\nhead -c 5000 /dev/zero | tr '\\0' 'a'\n")
    (Path(wire.limits.exec_dir or ".") / "long").chmod(0o755)
    client = await Client.connect(wire)
    assert await client.ask(delay(UUID, "long", "")) == OK
    reply = await client.result(UUID)
    assert len(reply) == 512
    assert json.loads(reply)["message"] == "a" * (512 - len(b'{"is_result_exist":1,"is_success":1,"message":""}'))
    await client.close()


@pytest.mark.parametrize(
    ("message", "error_reply"),
    [
        pytest.param(b"\x07{}", False, id="a type kingtask never sent"),
        pytest.param(b"\x01[1, 2]", False, id="not an object"),
        pytest.param(b'\x01{"uuid": "' + b"x" * (kingtask_wire.MAX_FRAME + 10), False, id="a frame too large"),
        pytest.param(b'\x01{"uuid": "x"', False, id="a frame never finished"),
        pytest.param(b"", False, id="silence"),
        pytest.param(b'\x01{"uuid": }', True, id="braces closed on invalid JSON"),
    ],
)
async def test_hostile_input_closes_only_its_own_connection(
    wire: KingtaskWire, message: bytes, error_reply: bool
) -> None:
    bystander = await Client.connect(wire)
    assert await bystander.ask(delay(UUID, "example", "2 2")) == OK
    hostile = await Client.connect(wire)
    hostile.writer.write(message)
    await hostile.writer.drain()
    started = time.monotonic()
    if error_reply:  # a complete message that is not JSON: kingtask's error reply comes first
        assert json.loads(await hostile.read())["status"] == 1

    async def bystander_keeps_talking() -> list[bytes]:
        replies = []
        while not hostile_closed.done():
            replies.append(await bystander.ask(get_result(UUID)))
            await asyncio.sleep(0.1)
        return replies

    hostile_closed = asyncio.ensure_future(hostile.closed())
    replies = await bystander_keeps_talking()
    assert hostile_closed.result()
    assert time.monotonic() - started < 3  # the timeouts are 0.5 s here
    assert all(reply.startswith(b'{"is_result_exist":') for reply in replies)
    assert json.loads(await bystander.result(UUID))["message"] == "4"
    await bystander.close()
    await hostile.close()


async def test_stop_closes_open_connections_quietly(wire: KingtaskWire, caplog: pytest.LogCaptureFixture) -> None:
    client = await Client.connect(wire)
    address = wire.address
    assert await client.ask(get_result(UUID)) == NOT_YET
    await wire.stop()
    assert await client.closed()
    await asyncio.sleep(0.05)  # asyncio logs a connection task that ended badly on the next loop turn
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    await client.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(*address)
