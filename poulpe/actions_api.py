"""POST /actions and GET /actions/{id} (SPEC 10.4)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from poulpe.actions import ActionIn
from poulpe.checks import split_msgspec
from poulpe.errors import BadRequest, NotFound
from poulpe.manager import JobManager
from poulpe.responses import json_response, read_json_body


async def post_action(request: Request) -> Response:
    """Matched now, acted on in the background: 202 {"id", "action", "matched"}."""
    manager: JobManager = request.state.manager
    body = await read_json_body(request, request.state.settings.max_body)
    try:
        wire = msgspec.json.decode(body, type=ActionIn)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, field) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {str(exc)[:200]}") from None
    action = await manager.actions.create(wire.action, wire.filter)
    return json_response({"id": action.id, "action": action.action, "matched": action.total}, 202)


async def get_action(request: Request) -> Response:
    manager: JobManager = request.state.manager
    action_id: str = request.path_params["id"]
    action = await manager.actions.get(action_id) if len(action_id) <= 128 else None
    if action is None:
        raise NotFound(f"no action with id {action_id[:128]}")
    return json_response(action.state())
