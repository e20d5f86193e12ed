"""The job JSON as it comes in: msgspec structs with each field's limits and description. The validator
(validate.py) decodes into them and /openapi.json is generated from them (poulpe/openapi), so the wire contract is
written once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec

from poulpe import chain_refs
from poulpe.bursts import DebounceIn, UniqueIn
from poulpe.job import Method
from poulpe.keys import KEY_WIRE
from poulpe.labels import LABELS_DOC, Labels
from poulpe.tracing import TRACEPARENT_PATTERN

MAX_BATCH = 1000
MAX_PARAMS = 512 * 1024
MAX_META = 16 * 1024
MAX_CHAIN = 1024 * 1024
_CHILDREN = ["object", "array", "null"]
MAX_SECONDS = 10 * 366 * 86400  # ten years: far enough for any schedule, small enough to stay exact
MAX_UNIX = 253402300799  # 9999-12-31T23:59:59Z
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"  # as documented (ECMA regex: `$` is the very end)
_ID_WIRE = r"^[A-Za-z0-9._:-]{1,128}\Z"  # Python's `$` would also match before a final newline

Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
NULL = msgspec.Raw(b"null")  # an absent Raw field: `raw is NULL`


def null_raw() -> msgspec.Raw:
    """An absent Raw field (a factory, not a default: msgspec cannot write a Raw default into a JSON Schema)."""
    return NULL


def any_case(words: Iterable[str]) -> str:
    """A pattern matching these words in any ASCII letter case: `get`, `Get`, `GET`."""
    spelled = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word) for word in words]
    return "^(?:" + "|".join(spelled) + ")$"


def _doc(text: str, **schema: Any) -> msgspec.Meta:
    """What /openapi.json says of a field beyond its type (poulpe/openapi): a description, a pattern the field's
    own check enforces after decoding."""
    return msgspec.Meta(description=text, extra_json_schema=schema or None)


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    """Retry policy of this job, instead of --max_retry and --retry_interval."""

    max: Annotated[Annotated[int, msgspec.Meta(ge=0, le=100)] | None, _doc("Retries after the first attempt.")] = None
    interval: Annotated[Seconds | None, _doc("Seconds between attempts.")] = None
    backoff: Annotated[Literal["fixed", "exponential"] | None, _doc("Exponential doubles.")] = None
    max_interval: Annotated[Seconds | None, _doc("Ceiling of the exponential backoff.")] = None
    intervals: Annotated[
        Annotated[list[Seconds], msgspec.Meta(min_length=1, max_length=100)] | None,
        _doc("One retry after each listed interval (kingtask's time_interval); not with max/interval/backoff."),
    ] = None
    max_duration: Annotated[
        Seconds | None, _doc("No retry starts later than this many seconds after the first attempt began.")
    ] = None


class JobIn(msgspec.Struct, forbid_unknown_fields=True):
    """The wire shape of SPEC 2.1, checked by type; the rules between fields are checked in `_build`."""

    method: Annotated[
        str,
        _doc(
            f"What the job does, in any letter case: {', '.join(m.value for m in Method)}.",
            pattern=any_case(m.value for m in Method),
        ),
    ]
    name: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=4096),
        _doc(
            "HTTP methods: an http or https URL with a host (and a host in --allow_hosts when set). EXEC: a "
            "program's file name inside --exec_dir. MAIL_TO: the recipient. QUEUE: the task type (1-64 letters and "
            "digits of any script, . _ -)."
        ),
    ]
    id: Annotated[
        Annotated[str, msgspec.Meta(pattern=_ID_WIRE)] | None,
        _doc(
            "Unique id, generated (UUID4) when absent. A known id is not stored twice: the answer is the existing "
            "job with `duplicate: true`."
        ),
    ] = None
    params: Annotated[
        msgspec.Raw,
        _doc(
            f"Any JSON, at most {MAX_PARAMS // 1024} KiB encoded. GET/DELETE: a query string or an object of scalars "
            "(or lists of them). POST/PUT/PATCH: the JSON body (a string must hold JSON). EXEC: arguments as a "
            "string (split like a shell) or an array of strings. QUEUE: handed to the worker as is."
        ),
    ] = msgspec.field(default_factory=null_raw)
    delay: Annotated[Seconds | None, _doc("Run this many seconds after acceptance; not with `at`.")] = None
    at: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=MAX_UNIX)] | Annotated[str, msgspec.Meta(max_length=64)] | None,
        _doc("Run at this unix time, or ISO-8601 time with a UTC offset; a past time means now. Not with `delay`."),
    ] = None
    cc: Annotated[
        Annotated[str, msgspec.Meta(max_length=4096)] | None,
        _doc("Worker numbers (0..--workers - 1) separated by spaces or commas: only these may run the job."),
    ] = None
    wait: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=300)] | None,
        _doc("Hold the answer up to this many seconds for the result."),
    ] = None
    timeout: Annotated[
        Annotated[float, msgspec.Meta(gt=0, le=86400)] | None, _doc("Limit of one attempt, seconds.")
    ] = None
    retry: RetryIn | None = None
    headers: Annotated[
        Annotated[dict[str, str], msgspec.Meta(max_length=64)] | None,
        _doc(
            "Extra request headers of an HTTP job. Names are HTTP tokens, not Host, Content-Length, "
            "Transfer-Encoding, Connection or Poulpe-*; values at most 8 KiB without line breaks."
        ),
    ] = None
    callback: Annotated[
        Annotated[str, msgspec.Meta(max_length=4096)] | None,
        _doc("An http or https URL the final result is POSTed to."),
    ] = None
    meta: Annotated[msgspec.Raw, _doc(f"Returned as is; at most {MAX_META // 1024} KiB.", type=["object", "null"])] = (
        msgspec.field(default_factory=null_raw)
    )
    key: Annotated[
        Annotated[str, msgspec.Meta(pattern=KEY_WIRE)] | None,
        _doc("Jobs sharing a key share its limits (PUT /keys/{key}) and take turns with other keys."),
    ] = None
    priority: Annotated[int, msgspec.Meta(ge=-100, le=100), _doc("Higher starts first.")] = 0
    traceparent: Annotated[
        Annotated[str, msgspec.Meta(pattern=TRACEPARENT_PATTERN, max_length=256)] | None,
        _doc("W3C trace context the job's attempts continue (else the request's traceparent header)."),
    ] = None
    then: Annotated[msgspec.Raw, _doc(chain_refs.THEN, type=_CHILDREN)] = msgspec.field(default_factory=null_raw)
    on_failure: Annotated[msgspec.Raw, _doc(chain_refs.ON_FAILURE, type=_CHILDREN)] = msgspec.field(
        default_factory=null_raw
    )
    labels: Annotated[Labels | None, _doc(LABELS_DOC)] = None
    debounce: DebounceIn | None = None
    unique: UniqueIn | None = None
    deadline: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=MAX_UNIX)] | Annotated[str, msgspec.Meta(max_length=64)] | None,
        _doc("Unix time or ISO-8601 time with a UTC offset: not started by then, the job ends dead, no attempt made."),
    ] = None
