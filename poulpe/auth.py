"""Bearer-token check for every route but /health (pure ASGI: no per-request overhead when no token is set)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from poulpe.responses import json_response
from poulpe.settings import Secret

# /health, and the dashboard page itself: it holds no data and asks for the token when a route answers 401
OPEN_PATHS = frozenset({"/health", "/", "/dashboard.js", "/dashboard.css"})
# ASGI's WebSocket Denial Response: an HTTP answer instead of the handshake (uvicorn's implementations all have it)
DENIAL = "websocket.http.response"


class TokenAuth:
    def __init__(self, app: ASGIApp, token: Secret | None) -> None:
        self.app = app
        self.token = token.reveal().encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket" and DENIAL not in scope.get("extensions", {}):
            # a server without the denial extension can only refuse the handshake: its clients see a 403
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong token"})
        else:
            # over HTTP and, through the extension, at a WebSocket handshake: the same 401 and JSON body
            response = json_response({"result": "Fail", "error": "missing or wrong bearer token", "field": None}, 401)
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        assert self.token is not None
        given = b""
        for key, value in scope.get("headers", ()):
            if key == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not given and scope["type"] == "websocket":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0].encode()
        return hmac.compare_digest(given, self.token)
