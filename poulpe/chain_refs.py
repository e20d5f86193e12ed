"""A chain's children as their parent carries them (SPEC 10.3): their shape, and `"$parent"` filled in.

`"$parent"` may stand as the whole `params` (not of GET or DELETE, whose params are a query string), as a value of
`headers`, or as the mail `body` of a MAIL_TO job; anywhere else it is refused at intake, naming its path. Filled in,
it is the parent's result JSON: as is for params of POST, PUT, PATCH and QUEUE jobs, as JSON text in a header, a
mail body or an EXEC job's one argument.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from poulpe.errors import BadRequest

PARENT = "$parent"
MAX_CHILDREN = 100
MAX_DEPTH = 10  # a top-level job is depth 0; its children 1; no job deeper than this
BRANCHES = {"then": "then", "on_failure": "fail"}  # the field, and the word in a child's default id
_NO_QUERY = ("GET", "DELETE")
THEN = (
    "A job object or an array of up to 100, submitted when this job succeeds (ids default to <id>.then.<i>; "
    '"$parent" as params, a headers value or a mail body becomes this job\'s result).'
)
ON_FAILURE = "As `then`, submitted when this job ends dead (ids default to <id>.fail.<i>)."
_RULE = '"$parent" may stand only as the whole params (not of GET or DELETE), a headers value or a mail body'


def as_list(value: Any, field: str) -> list[dict[str, Any]] | None:
    """`then` / `on_failure` as given (one job object or an array of them) → a list of job objects."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not 1 <= len(items) <= MAX_CHILDREN:
        raise BadRequest(f"{field} holds 1 to {MAX_CHILDREN} job objects, this one {len(items)}", field)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest("a child job must be a job object", f"{field}[{i}]")
    return items


def check(value: Any, field: str, parent_id: str, depth: int, parse: Callable[..., object]) -> list[Any] | None:
    """A job's `then` or `on_failure` at intake: each child checked by `parse` (the validator) as it will be
    submitted, with a stand-in for the parent's result; an error names the child's path (`then[0].methd`)."""
    items = as_list(value, field)
    if items is not None and depth >= MAX_DEPTH:
        raise BadRequest(f"chains nest at most {MAX_DEPTH} jobs deep", field)
    for i, child in enumerate(items or ()):
        where = f"{field}[{i}]"
        stand_in = {**probe(child, where)}  # a copy: the id goes into the check only
        if stand_in.get("id") is None:
            stand_in["id"] = default_id(parent_id, field, i)
        try:
            parse(stand_in, depth=depth + 1)
        except BadRequest as exc:
            raise BadRequest(exc.message, f"{where}.{exc.field}" if exc.field else where) from None
    return items


def descendants(children: list[Any] | None) -> Iterator[dict[str, Any]]:
    """Every child object below these, at any depth (a tenant's token puts each in its namespace)."""
    for child in children or ():
        yield child
        yield from descendants(as_list(child.get("then"), "then"))
        yield from descendants(as_list(child.get("on_failure"), "on_failure"))


def default_id(parent_id: str, field: str, i: int) -> str:
    return f"{parent_id}.{BRANCHES[field]}.{i}"


def _spots(child: dict[str, Any]) -> set[tuple[str, ...]]:
    """Where `"$parent"` may stand in this child."""
    method = str(child.get("method", "")).upper()
    params, headers = child.get("params"), child.get("headers")
    spots: set[tuple[str, ...]] = set()
    if params == PARENT and method not in _NO_QUERY:
        spots.add(("params",))
    if method == "MAIL_TO" and isinstance(params, dict) and params.get("body") == PARENT:
        spots.add(("params", "body"))
    if isinstance(headers, dict):
        spots.update(("headers", name) for name, value in headers.items() if value == PARENT)
    return spots


def _misplaced(value: Any, path: tuple[str, ...], spots: set[tuple[str, ...]], field: str) -> None:
    if value == PARENT and path not in spots:
        raise BadRequest(_RULE, ".".join((field, *path)))
    if isinstance(value, dict):
        for key, item in value.items():
            if path or key not in BRANCHES:  # a grandchild's "$parent" is its own parent's result: checked there
                _misplaced(item, (*path, str(key)), spots, field)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _misplaced(item, (*path[:-1], f"{path[-1]}[{i}]"), spots, field)


def fill(child: dict[str, Any], field: str, result: Any, text: str) -> dict[str, Any]:
    """A copy of the child with `"$parent"` replaced by the parent's result (`text`: the same as JSON text).

    At intake the result is a stand-in, so the child is checked as it will be; a misplaced `"$parent"` is refused.
    """
    spots = _spots(child)
    _misplaced(child, (), spots, field)
    if not spots:
        return child
    filled = copy.deepcopy(child)
    for spot in spots:
        if spot == ("params",):
            method = str(child.get("method", "")).upper()
            filled["params"] = [text] if method == "EXEC" else result
        else:
            filled[spot[0]][spot[1]] = text
    return filled


def probe(child: dict[str, Any], field: str) -> dict[str, Any]:
    """The child as intake checks it: a stand-in where the parent's result will go."""
    return fill(child, field, {}, "{}")
