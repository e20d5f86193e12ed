"""poulpe served in the test's own process: a real uvicorn server on a free loopback port, lifespan included.

`serving(settings)` runs it on the test's event loop. `ServedPoulpe` runs it on an event loop of its own in a thread
and offers `Poulpe`'s face (`url`, `client()`, `async_client()`, `log()`, `stop()`), so an end-to-end test that needs
no process boundary changes its fixture, not its body. Signals, kill -9, restarts, start-up and the command line keep
the subprocess (tests/poulpe_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from poulpe.app import create_app
from poulpe.cli import known_secrets, settings_from
from poulpe.log_filters import FloodGuard, Redactor
from poulpe.logs import JsonFormatter
from poulpe.server import PoulpeServer, build_server
from poulpe.settings import Settings
from tests.poulpe_process import free_port


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Start poulpe with these settings, yield a client for it, then drain and stop it."""
    async with serving_app(create_app(settings)) as client:
        yield client


@contextlib.asynccontextmanager
async def serving_app(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Serve an app the test built (and looks into), yield a client for it, then drain and stop it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("poulpe stopped before it started")
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """The process environment with `extra` set, as the subprocess would have had it; restored afterwards."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _not_the_tests_own(record: logging.LogRecord) -> bool:
    """poulpe runs in threads of its own: what the test's thread logs (its clients, at debug) is not poulpe's log."""
    return record.thread != threading.main_thread().ident


class ServedPoulpe:
    """poulpe on a uvicorn server in a thread of the test's process, with the flags the `poulpe` command takes.

    Its data file and dead-letter directory are under `home`, as for `Poulpe`; what it logs while it runs goes to
    `home/poulpe.log` through the same redactor and flood guard as the command's stderr (poulpe/logs.py).
    """

    def __init__(self, home: Path, *flags: str, env: dict[str, str] | None = None, token: str | None = None) -> None:
        self.home = home
        self.flags = list(flags)
        self.env = env or {}
        self.token = token
        self.port = free_port()
        self.log_path = home / "poulpe.log"
        home.mkdir(parents=True, exist_ok=True)
        self._server: PoulpeServer | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._handler: logging.Handler | None = None
        self._root_level = logging.NOTSET
        self._aiokafka_level = logging.NOTSET
        self._environment: contextlib.ExitStack | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        defaults = ["--port", str(self.port), "--data", str(self.home / "poulpe.db"), "--dead", str(self.home / "dead")]
        return [*defaults, *self.flags]

    def start(self, timeout: float = 20.0) -> ServedPoulpe:
        """Start and wait until /health answers 200."""
        self._environment = contextlib.ExitStack()
        self._environment.enter_context(environment(self.env))
        settings = settings_from(self.args())
        self._log_to_file(settings)
        self._server = build_server(settings)
        self._thread = threading.Thread(target=self._serve, name=f"poulpe-{self.port}", daemon=True)
        self._thread.start()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        except BaseException as exc:  # shown by start() or stop(), in the test's thread
            self._failure = exc

    def _wait_healthy(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < end:
                assert self._thread is not None
                if not self._thread.is_alive():
                    raise RuntimeError(f"poulpe stopped: {self._failure!r}\n{self.log()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"poulpe did not become healthy in {timeout}s:\n{self.log()}")

    def _log_to_file(self, settings: Settings) -> None:
        """What `poulpe.logs.configure` does for the command, into home/poulpe.log, for as long as this runs."""
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.addFilter(_not_the_tests_own)
        handler.addFilter(FloodGuard())
        handler.addFilter(Redactor(known_secrets(settings)))
        handler.setLevel(settings.log_level.upper())
        if settings.log_json:
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(min(root.level or logging.WARNING, handler.level))
        root.addHandler(handler)
        self._handler = handler
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # as the command does, before uvicorn's Config
            logging.getLogger(name).handlers[:] = []
            logging.getLogger(name).propagate = True
            # as in a fresh process: a level an earlier test's uvicorn.Config(log_level=...) left would hide lines
            logging.getLogger(name).setLevel(logging.NOTSET)
        # as the command does: aiokafka logs every failed try; poulpe.kafka logs each change of connection state
        self._aiokafka_level = logging.getLogger("aiokafka").level
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def hold(self, seconds: float) -> None:
        """Keep poulpe's event loop busy for `seconds` from now, as a loaded machine does: connections made meanwhile
        wait in the kernel's listen queue, their requests with them, and are accepted in one burst afterwards."""
        assert self._server is not None
        self._server.servers[0].get_loop().call_soon_threadsafe(time.sleep, seconds)

    @property
    def pid(self) -> int:
        """The process poulpe runs in (the test's own), which its node name ends with."""
        return os.getpid()

    def alive(self) -> bool:
        """The server still serves: its thread runs and nothing it ran has failed."""
        return self._thread is not None and self._thread.is_alive() and self._failure is None

    def log(self) -> str:
        if self._handler is not None:
            self._handler.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Drain and stop, as SIGTERM does for the command (running attempts get --grace seconds)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(60)
            self._server = None
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            logging.getLogger().setLevel(self._root_level)
            logging.getLogger("aiokafka").setLevel(self._aiokafka_level)
            self._handler.close()
            self._handler = None
        if self._environment is not None:
            self._environment.close()
            self._environment = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RuntimeError("poulpe failed while it served") from failure

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)
