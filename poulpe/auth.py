"""Who may call what: the bearer token at the door, then each route's scope (poulpe/scopes.py) at the route.

`TokenAuth` (pure ASGI: no cost when no token is set) finds the request's token among those in force and answers 401
without one. `guard` wraps every route with its rule from the one table of scopes, so a route nobody gave a scope
cannot be served: 403 for a scope the token lacks, or a route of the whole deployment asked by a tenant's token.
A token with a tenant or quotas sees the manager through `Scoped` (poulpe/tenants.py): one view per token, kept
until the tokens are reloaded. On an open WebSocket each message checks the token is still in force: one removed
from the file closes the socket (4401) at its next message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poulpe.quotas import Buckets
from poulpe.responses import json_response
from poulpe.scopes import PUBLIC_PATHS, Rule, allowed, rule_of
from poulpe.tenants import Scoped
from poulpe.token_file import Tokens
from poulpe.tokens import Principal

PRINCIPAL = "poulpe.principal"  # the scope entry TokenAuth leaves for the route's guard
# ASGI's WebSocket Denial Response: an HTTP answer instead of the handshake (uvicorn's implementations all have it)
DENIAL = "websocket.http.response"
REVOKED = 4401  # WebSocket close code: the token was removed while the socket was open


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    if scope["type"] == "websocket" and DENIAL not in scope.get("extensions", {}):
        # a server without the denial extension can only refuse the handshake: its clients see a 403
        await send({"type": "websocket.close", "code": 1008, "reason": error})
        return
    # over HTTP and, through the extension, at a WebSocket handshake: the same answer and JSON body
    response = json_response({"result": "Fail", "error": error, "field": None}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response(scope, receive, send)


class TokenAuth:
    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or await admit(self.tokens, scope, receive, send):
            await self.app(scope, receive, send)


async def admit(tokens: Tokens, scope: Scope, receive: Receive, send: Send) -> bool:
    """The door of an HTTP or WebSocket request: False once refused (401 sent), else True and the request's
    principal left in its scope when tokens are in force."""
    if tokens.table is None or scope["path"] in PUBLIC_PATHS:
        return True
    principal = tokens.find(_given(scope))
    if principal is None:
        await refuse(scope, receive, send, 401, "missing or wrong bearer token")
        return False
    scope[PRINCIPAL] = principal
    return True


def _given(scope: Scope) -> bytes:
    given = b""
    for key, value in scope.get("headers", ()):
        if key == b"authorization" and value[:7].lower() == b"bearer ":
            given = value[7:].strip()
    if not given and scope["type"] == "websocket":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0].encode()
    return given


class Guard:
    """One route's rule, checked before its endpoint runs."""

    def __init__(self, app: ASGIApp, rule: Rule, tokens: Tokens) -> None:
        self.app = app
        self.rule = rule
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get(PRINCIPAL)
        if principal is None:  # no token in force, or a public route
            await self.app(scope, receive, send)
            return
        if not allowed(principal.scopes, self.rule):
            why = f"this token's scopes do not allow this route (it needs {self.rule.need})"
            await refuse(scope, receive, send, 403, why)
            return
        if self.rule.whole and principal.tenant is not None:
            await refuse(scope, receive, send, 403, "this route serves the whole deployment: not a tenant's token")
            return
        if principal.tenant is not None or principal.rate is not None or principal.max_pending is not None:
            state = scope["state"] = dict(scope["state"])  # this request's own: the view never reaches another
            state["manager"] = self._view(principal, state["manager"], state["buckets"])
        if scope["type"] == "websocket":
            receive = self._still_valid(principal, receive, send)
        await self.app(scope, receive, send)

    def _view(self, principal: Principal, manager: Any, buckets: Buckets) -> Scoped:
        """The manager as this token sees it. A view holds nothing of one request: one serves all of its token's."""
        views = self.tokens.views
        view = views.get(principal.digest)
        if not isinstance(view, Scoped) or view.principal is not principal or not view.over(manager, buckets):
            view = views[principal.digest] = Scoped(manager, principal, buckets)
        return view

    def _still_valid(self, principal: Principal, receive: Receive, send: Send) -> Receive:
        async def checked() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive" and not self.tokens.still(principal):
                error = '{"type": "error", "error": "token no longer valid", "field": null, "status": 401}'
                await send({"type": "websocket.send", "text": error})
                await send({"type": "websocket.close", "code": REVOKED, "reason": "token no longer valid"})
                return {"type": "websocket.disconnect", "code": REVOKED}
            return message

        return checked


def guard(routes: list[BaseRoute], tokens: Tokens) -> list[BaseRoute]:
    """Every route wrapped with its rule; a route with no rule in poulpe/scopes.py stops poulpe from starting."""
    for route in routes:
        if isinstance(route, WebSocketRoute):
            method = "WS"
        elif isinstance(route, Route) and route.methods:
            [method] = sorted(route.methods - {"HEAD"}) or ["GET"]
        else:
            raise RuntimeError(f"route {route!r}: only Route and WebSocketRoute can be given a scope")
        try:
            rule = rule_of(method, route.path)
        except KeyError:
            raise RuntimeError(f"route {method} {route.path} has no scope in poulpe/scopes.py") from None
        route.app = Guard(route.app, rule, tokens)
    return routes
