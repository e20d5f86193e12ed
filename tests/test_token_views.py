"""A token with a tenant sees the manager through one view, kept until the tokens are reloaded: its requests do not
each build their own, and a reload that gives the same token another tenant takes effect at its next request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from poulpe.auth import PRINCIPAL, Guard
from poulpe.quotas import LocalBuckets
from poulpe.scopes import SUBMIT
from poulpe.tenants import Scoped
from poulpe.token_file import Tokens
from tests.tokens_file import write_tokens


async def _receive() -> Message:
    raise AssertionError("the endpoint reads no body here")


async def _send(message: Message) -> None:
    raise AssertionError("the endpoint answers nothing here")


class _Route:
    """A route behind its guard that notes the manager it was given."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.guard = Guard(self._endpoint, SUBMIT, tokens)
        self.seen: list[Any] = []

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope["state"]["manager"])

    async def manager_for(self, token: str, state: dict[str, Any]) -> Scoped:
        principal = self.tokens.find(token.encode())
        assert principal is not None
        await self.guard({"type": "http", "state": state, PRINCIPAL: principal}, _receive, _send)
        seen = self.seen[-1]
        assert isinstance(seen, Scoped)
        return seen


async def test_one_view_per_token_until_the_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = write_tokens(path, ci={"scopes": ["submit"], "tenant": "pay"})["ci"]
    route = _Route(Tokens(path, None))
    state = {"manager": object(), "buckets": LocalBuckets()}

    first = await route.manager_for(token, state)
    assert first.prefix == "pay:"
    assert await route.manager_for(token, state) is first  # not built again for each request
    assert state["manager"] is not first  # the lifespan's state is never the view

    # the same token, now given the tenant `shop`: its next request is shop's
    path.write_text(path.read_text().replace('tenant = "pay"', 'tenant = "shop"'))
    assert route.tokens.reload()
    assert (await route.manager_for(token, state)).prefix == "shop:"

    # a new manager (poulpe started again in the same process): a view over it, never over the old one
    restarted = {"manager": object(), "buckets": LocalBuckets()}
    view = await route.manager_for(token, restarted)
    assert view.over(restarted["manager"], restarted["buckets"]) and not view.over(state["manager"], state["buckets"])
