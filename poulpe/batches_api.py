"""POST /batches and GET /batches/{id} (SPEC 10.3)."""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import Response

from poulpe.batch_record import Batch
from poulpe.batches import BATCH_ID, parse_batch
from poulpe.errors import Conflict, NotFound
from poulpe.manager import JobManager
from poulpe.responses import json_response, read_json_body
from poulpe.validate import Limits

_ID = re.compile(BATCH_ID)
BODY_FACTOR = 16  # a batch's body may be this many times --max_body: 10,000 jobs do not fit in one job's bound


async def post_batch(request: Request) -> Response:
    """All the jobs are stored or none: 202 {"id", "total"}; a known batch id answers 200 with its state."""
    manager: JobManager = request.state.manager
    limits: Limits = request.state.limits
    body = await read_json_body(request, request.state.settings.max_body * BODY_FACTOR)
    batch, jobs = parse_batch(body, limits, time.time())
    known = await manager.submit_batch(batch, jobs)
    if isinstance(known, Batch):
        return json_response({**known.state(), "duplicate": True}, 200)
    if isinstance(known, str):
        raise Conflict(f"job {known} exists already: a batch's jobs are new jobs (nothing was stored)", "jobs")
    return json_response({"id": batch.id, "total": batch.total}, 202)


async def get_batch(request: Request) -> Response:
    manager: JobManager = request.state.manager
    batch_id: str = request.path_params["id"]
    batch = await manager.get_batch(batch_id) if _ID.fullmatch(batch_id) else None
    if batch is None:
        raise NotFound(f"no batch with id {batch_id[:128]}")
    return json_response(batch.state())
