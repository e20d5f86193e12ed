"""The routes of chains, batches, labels and bulk actions (SPEC 10.3, 10.4), as /openapi.json describes them: the
filters GET /jobs and GET /dead take, and the batch and action routes (kept apart from routes.py)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from poulpe.batches import BATCH_ID, BatchIn
from poulpe.job import Method
from poulpe.labels import LABEL_PAIR
from poulpe.openapi.build import Answer, Op, Param
from poulpe.openapi.routes import errors, query
from poulpe.validate import any_case

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
]
