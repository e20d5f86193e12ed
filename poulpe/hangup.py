"""SIGHUP for several readers: the event loop keeps one handler per signal, so the cron file and the tokens file
each register a callback here, and one handler calls them all."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

_callbacks: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}


def _hangup(loop: asyncio.AbstractEventLoop) -> None:
    for callback in list(_callbacks.get(loop, ())):
        callback()


def on_hangup(callback: Callable[[], None]) -> None:
    """Call `callback` on SIGHUP (nothing happens off the main thread, where no signal can be handled)."""
    loop = asyncio.get_running_loop()
    callbacks = _callbacks.setdefault(loop, [])
    callbacks.append(callback)
    if len(callbacks) == 1:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, _hangup, loop)


def off_hangup(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    callbacks = _callbacks.get(loop, [])
    with contextlib.suppress(ValueError):
        callbacks.remove(callback)
    if not callbacks:
        _callbacks.pop(loop, None)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
