"""The routes of chains, batches, labels and bulk actions (SPEC 10.3, 10.4), as /openapi.json describes them: the
filters GET /jobs and GET /dead take, and the batch and action routes (kept apart from routes.py)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from poulpe.action_record import Kind
from poulpe.actions import ActionIn
from poulpe.batches import BATCH_ID, BatchIn
from poulpe.job import Method
from poulpe.job_in import any_case
from poulpe.labels import LABEL_PAIR
from poulpe.openapi.build import Answer, Op, Param
from poulpe.openapi.routes import errors, query

FILTERS = (
    query(
        "label",
        Annotated[str, Meta(pattern=LABEL_PAIR.replace("\\Z", "$"))],
        "Only jobs with this label, `k:v` (repeat it: a job must carry every label named).",
    ),
    query("key", str, "Only jobs of this key."),
    query("name_prefix", str, "Only jobs whose name starts so."),
    query("since", float, "Only jobs that ended (a job not final: were accepted) at or after this unix time."),
    query("until", float, "Only jobs that ended (a job not final: were accepted) before this unix time."),
    query("error_contains", str, "Only jobs whose last error holds this text."),
)
_METHOD = query("method", Annotated[str, Meta(pattern=any_case(m.value for m in Method))], "Only jobs of this method.")
_FILTERED = {"listJobs": FILTERS, "listDead": (_METHOD, *FILTERS)}


def with_filters(operations: list[Op]) -> list[Op]:
    """GET /jobs and GET /dead with the filters of SPEC 10.4 beside their own parameters."""
    extra = _FILTERED.get
    return [dataclasses.replace(op, params=(*op.params, *extra(op.operation_id, ()))) for op in operations]


class BatchAccepted(msgspec.Struct):
    """Every job of the batch is stored."""

    id: str
    total: Annotated[int, Meta(ge=1)]


class BatchState(msgspec.Struct, kw_only=True):
    """A batch's counters, moved by each of its jobs' final state (SPEC 10.3)."""

    id: str
    total: int
    pending: int
    succeeded: int
    dead: int
    cancelled: int
    done: Annotated[bool, Meta(description="Every job is final; on_complete and the callback were submitted once.")]
    created_at: float
    finished_at: float | None
    labels: dict[str, str] | UnsetType = UNSET
    duplicate: Annotated[bool, Meta(description="The batch id was known: nothing was stored.")] | UnsetType = UNSET


class ActionAccepted(msgspec.Struct):
    """Matched now; acted on in the background."""

    id: str
    action: Kind
    matched: Annotated[int, Meta(ge=0)]


class ActionState(msgspec.Struct, kw_only=True):
    """How far a bulk action got (SPEC 10.4)."""

    id: str
    action: Kind
    filter: dict[str, Any]
    total: int
    matched: int
    done: Annotated[int, Meta(description="Jobs handled: acted on, or counted in errors.")]
    errors: Annotated[int, Meta(description="Jobs it could not act on (no longer dead, running...).")]
    finished: bool
    created_at: float
    finished_at: float | None
    last_error: str | UnsetType = UNSET


BATCH = Param("id", "path", Annotated[str, Meta(pattern=BATCH_ID.replace("\\Z", "$"))], required=True)
FLOWS = [
    Op(
        "post",
        "/batches",
        "postBatch",
        "Submit up to 10,000 jobs at once, stored all or none, and learn once when all are final",
        body=BatchIn,
        answers={
            202: Answer(BatchAccepted, "Stored"),
            200: Answer(BatchState, "The batch id was known: its state"),
            **errors(400, 409, 413, 415, 503, words={409: "A job id of the batch is known: nothing was stored"}),
        },
    ),
    Op(
        "get",
        "/batches/{id}",
        "getBatch",
        "A batch's counters",
        params=(BATCH,),
        answers={200: Answer(BatchState, "The batch"), **errors(404, words={404: "No such batch"})},
    ),
    Op(
        "post",
        "/actions",
        "postAction",
        "Retry, cancel, delete or run now every job a filter matches, in the background, each once",
        body=ActionIn,
        answers={202: Answer(ActionAccepted, "Started"), **errors(400, 413, 415, 503)},
    ),
    Op(
        "get",
        "/actions/{id}",
        "getAction",
        "How far a bulk action got",
        params=(Param("id", "path", Annotated[str, Meta(min_length=1, max_length=128)], required=True),),
        answers={200: Answer(ActionState, "The action"), **errors(404, words={404: "No such action"})},
    ),
]
