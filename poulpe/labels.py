"""Labels (SPEC 10.4): a job's `labels`, and the filters of GET /jobs, GET /dead and POST /actions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

from poulpe.checks import split_msgspec
from poulpe.errors import BadRequest
from poulpe.job import Job, Method, Status

LABEL_KEY = r"^[a-z0-9_.-]{1,64}\Z"
MAX_LABELS = 16
LABELS_DOC = "Up to 16 labels (keys of a-z 0-9 _ . -): GET /jobs, GET /dead and POST /actions filter by them."
Labels = Annotated[
    dict[Annotated[str, msgspec.Meta(pattern=LABEL_KEY)], Annotated[str, msgspec.Meta(max_length=256)]],
    msgspec.Meta(max_length=MAX_LABELS),
]
LABEL_PAIR = r"^[a-z0-9_.-]{1,64}:[^\n]{0,256}\Z"  # `k:v` in a filter
_FILTERS = ("label", "key", "method", "name_prefix", "since", "until", "error_contains")


class JobFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a listing or a bulk action selects (SPEC 10.4): a job must meet every filter given.

    `since`/`until` (unix s, `until` excluded) compare with the time a final job ended, or the time a job not final
    yet was accepted: on dead jobs they select by the time of death."""

    label: list[Annotated[str, msgspec.Meta(pattern=LABEL_PAIR)]] = []
    key: str | None = None
    method: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    name_prefix: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    since: float | None = None
    until: float | None = None
    error_contains: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)] | None = None
    status: Annotated[str, msgspec.Meta(max_length=16)] | None = None

    def __post_init__(self) -> None:
        """Method and status in any letter case, checked here so that the error names the field."""
        if self.method is not None and self.method.upper() not in Method.__members__:
            raise BadRequest(f"method must be one of {', '.join(m.value for m in Method)}", "method")
        if self.status is not None and self.status.lower() not in {s.value for s in Status}:
            raise BadRequest(f"status must be one of {', '.join(s.value for s in Status)}", "status")

    @property
    def narrows(self) -> bool:
        """A filter a store's own indexes cannot answer (status, method and name alone they can)."""
        return bool(self.label) or any(getattr(self, name) is not None for name in _FILTERS[1:] if name != "method")

    def pairs(self) -> list[tuple[str, str]]:
        return [(pair.partition(":")[0], pair.partition(":")[2]) for pair in self.label]

    def matches(self, job: Job) -> bool:
        if self.status is not None and job.status.value != self.status.lower():
            return False
        if self.method is not None and job.method.value != self.method.upper():
            return False
        if (self.key is not None and job.key != self.key) or not job.name.startswith(self.name_prefix or ""):
            return False
        labels = job.labels or {}
        if any(labels.get(name) != value for name, value in self.pairs()):
            return False
        when = job.finished_at if job.final and job.finished_at is not None else job.created_at
        if (self.since is not None and when < self.since) or (self.until is not None and when >= self.until):
            return False
        return self.error_contains is None or self.error_contains in (job.error or "")


def filter_from_query(query: Mapping[str, str], labels: Sequence[str]) -> JobFilter:
    """The filters of GET /jobs and GET /dead from the query string (`label` repeatable); 400 naming the field."""
    given: dict[str, Any] = {name: query[name] for name in _FILTERS[1:] if query.get(name)}
    if labels:
        given["label"] = list(labels)
    for name in ("since", "until"):
        if name in given:
            try:
                given[name] = float(given[name])
            except ValueError:
                raise BadRequest(f"{name} must be unix seconds", name) from None
    try:
        return msgspec.convert(given, JobFilter)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, (field or "").split("[")[0] or None) from None
