"""The routes of chains, batches, labels and bulk actions (SPEC 10.3, 10.4), as /openapi.json describes them: the
filters GET /jobs and GET /dead take, and the batch and action routes (kept apart from routes.py)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from msgspec import Meta

from poulpe.job import Method
from poulpe.labels import LABEL_PAIR
from poulpe.openapi.build import Op
from poulpe.openapi.routes import query
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
