"""POST /task_in_queue through one ASGI layer instead of six.

Every request to the app goes through Starlette's stack: ServerErrorMiddleware, ErrorCounter, TokenAuth,
ExceptionMiddleware, the router and the route's Guard, each a coroutine of its own, three of them wrapping `send`,
and ExceptionMiddleware building a Request. For the intake route that stack cost about 5 µs of the event loop's CPU
per request (bench/notes.md, "Intake: the writer's cache, one layer"). `PoulpeApp` answers POST /task_in_queue
with `HotRoute`, which does what each of those layers does for it, in their order: the same scope entries, the same
token check and 401, the same route guard, the same exception handlers (and their answers counted the same way:
ErrorCounter counts the handlers' answers and the 401, not the 500 of an unexpected error, which
ServerErrorMiddleware sends from outside it), the exception raised again after a 500. Every other request, and one
to the same path that the stack could route differently (another method, a root path), takes the whole stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from poulpe.auth import TokenAuth, admit
from poulpe.metrics import ErrorCounter, Metrics, count_answer
from poulpe.token_file import Tokens

PATH = "/task_in_queue"
# The user middleware HotRoute stands in for, outermost first (what create_app gives Starlette).
STANDS_IN_FOR = (ErrorCounter, TokenAuth)


class HotRoute:
    """The intake route with the work of the layers above it (the module's docstring)."""

    def __init__(self, app: Starlette, route: Route, tokens: Tokens, metrics: Metrics) -> None:
        given: tuple[object, ...] = tuple(m.cls for m in app.user_middleware)
        if given != STANDS_IN_FOR:
            raise RuntimeError("the app's middleware changed: HotRoute must do what the new stack does (hot.py)")
        handlers: Mapping[Any, Any] = app.exception_handlers
        self.app = app
        self.route = route
        self.tokens = tokens
        self.metrics = metrics
        unexpected = handlers.get(500) or handlers.get(Exception)  # ServerErrorMiddleware's
        if unexpected is None or HTTPException not in handlers:
            raise RuntimeError("HotRoute answers errors with the app's handlers: Exception and HTTPException need one")
        self.unexpected = unexpected
        # ExceptionMiddleware's: by exception class (HTTPException by status first), never Exception or 500
        self.by_status = {k: v for k, v in handlers.items() if isinstance(k, int) and k != 500}
        self.by_class = {k: v for k, v in handlers.items() if isinstance(k, type) and k is not Exception}
        self.scope_handlers = (self.by_class, self.by_status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _Answer(send, self.metrics)
        try:
            await self._guarded(scope, receive, answer)
        except Exception as exc:  # ServerErrorMiddleware: outside ErrorCounter, so its 500 is not counted
            response = await self.unexpected(Request(scope), exc)
            if not answer.started:
                await response(scope, receive, send)
            raise exc

    async def _guarded(self, scope: Scope, receive: Receive, answer: _Answer) -> None:
        if self.tokens.table is not None and not await admit(self.tokens, scope, receive, answer):
            return  # TokenAuth answered 401
        scope["starlette.exception_handlers"] = self.scope_handlers
        scope.setdefault("router", self.app.router)
        scope["endpoint"] = self.route.endpoint
        scope["path_params"] = {**scope.get("path_params", {})}
        try:
            await self.route.app(scope, receive, answer)  # the Guard, then the route
        except Exception as exc:  # ExceptionMiddleware
            handler = self._handler(exc)
            if handler is None:
                raise
            if answer.started:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            response = await handler(Request(scope, receive, answer), exc)
            if response is not None:
                await response(scope, receive, answer)
            exc.__traceback__ = None  # a reused exception instance would gather tracebacks

    def _handler(self, exc: Exception) -> Any:
        if isinstance(exc, HTTPException) and exc.status_code in self.by_status:
            return self.by_status[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self.by_class:
                return self.by_class[cls]
        return None


class _Answer:
    """The one `send` wrapper: whether the answer started, and ErrorCounter's count."""

    __slots__ = ("metrics", "send", "started")

    def __init__(self, send: Send, metrics: Metrics) -> None:
        self.send = send
        self.metrics = metrics
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            count_answer(self.metrics, message)
        await self.send(message)


class PoulpeApp(Starlette):
    """Starlette, with POST /task_in_queue answered by `hot` when it is set."""

    hot: HotRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot
        if (
            hot is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def hot_route(app: PoulpeApp, tokens: Tokens, metrics: Metrics) -> None:
    """Serve POST /task_in_queue through one layer: the first route of the app that matches it, as the router would."""
    for route in app.routes:
        if isinstance(route, Route) and route.path_regex.match(PATH):
            if route.methods and "POST" not in route.methods:
                continue
            assert route.path == PATH, f"{route.path} would be routed before {PATH}"
            app.hot = HotRoute(app, route, tokens, metrics)
            return
    raise RuntimeError(f"no POST {PATH} route")
