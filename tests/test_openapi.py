"""/openapi.json is generated from the structs; it says what the hand-written document said, route by route.

tests/openapi_before.json is the document as it was written by hand (poulpe/openapi.py and its three helper
modules, before they went away). "The same meaning", operation by operation:

- every path and method of one is in the other, with the same operationId, tags and security;
- the same parameters (name and place), each with the same `required` and `allowEmptyValue` and a schema of the
  same meaning;
- the same request body (required or not) with a schema of the same meaning;
- the same answer status codes, each with the same media type and a schema of the same meaning.

Two schemas have the same meaning when they are equal once each is put in a canonical form: $refs are inlined (a
sibling of a $ref is merged in), words for people are dropped (description, title, examples, default), `allOf` of
objects is merged, `const` is a one-value `enum`, a type list is an `anyOf` of one type each (each keeping only the
keywords that apply to its type), nested `anyOf`s are flattened and sorted, `type` beside an `enum` whose values all
have that type is dropped, an empty `required` or `properties` is dropped, and a property whose schema is `{}` is
dropped where unknown properties are allowed anyway. None of these changes what a schema accepts or refuses.

A change to the wire contract (a new route, a new field) fails this test until the fixture says it too:
`.venv/bin/python -m tests.test_openapi` rewrites the fixture from the generated document, and the fixture's diff
shows the change in review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from poulpe.openapi import document

FIXTURE = Path(__file__).parent / "openapi_before.json"
BEFORE = json.loads(FIXTURE.read_text())
COSMETIC = {"description", "title", "examples", "example", "default", "summary"}
APPLIES = {
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "string": {"minLength", "maxLength", "pattern", "format"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"},
    "object": {"properties", "required", "additionalProperties", "minProperties", "maxProperties"},
    "boolean": set(),
    "null": set(),
}
APPLIES["integer"] = APPLIES["number"]


def _of_type(value: Any, kind: str) -> bool:
    python = {
        "string": str,
        "boolean": bool,
        "null": type(None),
        "array": list,
        "object": dict,
    }
    if kind in python:
        return isinstance(value, python[kind])
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return numeric and (kind == "number" or float(value).is_integer())


def _resolve(schema: Any, doc: dict[str, Any]) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**doc["components"]["schemas"][name], **siblings}
    return schema


def canonical(schema: Any, doc: dict[str, Any]) -> Any:
    schema = _resolve(schema, doc)
    if not isinstance(schema, dict):
        return schema
    schema = {key: value for key, value in schema.items() if key not in COSMETIC}
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in [canonical(part, doc) for part in schema.pop("allOf")] + [canonical(schema, doc)]:
            for key, value in part.items():
                if key == "properties":
                    merged[key] = {**merged.get(key, {}), **value}
                elif key == "required":
                    merged[key] = sorted({*merged.get(key, []), *value})
                else:
                    merged[key] = value
        return canonical(merged, doc)
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if isinstance(schema.get("type"), list):
        kinds = schema.pop("type")
        return canonical({"anyOf": [_only(schema, kind) for kind in kinds]}, doc)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = canonical(schema[key], doc)
            if schema[key] == {} and key == "additionalProperties":
                del schema[key]
    if "properties" in schema:
        properties = {name: canonical(value, doc) for name, value in schema["properties"].items()}
        if schema.get("additionalProperties") is not False:
            properties = {name: value for name, value in properties.items() if value != {}}
        schema["properties"] = properties
        if not properties:
            del schema["properties"]
    if "prefixItems" in schema:
        schema["prefixItems"] = [canonical(item, doc) for item in schema["prefixItems"]]
    if "required" in schema:
        schema["required"] = sorted(schema["required"])
        if not schema["required"]:
            del schema["required"]
    if "enum" in schema:
        if "type" in schema and all(_of_type(value, schema["type"]) for value in schema["enum"]):
            del schema["type"]
        schema["enum"] = sorted(schema["enum"], key=lambda value: (type(value).__name__, json.dumps(value)))
    if "anyOf" in schema:
        options: list[Any] = []
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        for option in schema["anyOf"]:
            option = canonical({**rest, **_resolve(option, doc)} if rest else option, doc)
            options += option["anyOf"] if set(option) == {"anyOf"} else [option]
        unique = {json.dumps(option, sort_keys=True): option for option in options}
        if len(unique) == 1:
            return next(iter(unique.values()))
        return {"anyOf": [unique[key] for key in sorted(unique)]}
    return schema


def _only(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """The part of `schema` that applies to values of one type."""
    kept = {key: value for key, value in schema.items() if key in APPLIES[kind] or key not in _TYPED}
    if "enum" in kept:
        kept["enum"] = [value for value in kept["enum"] if _of_type(value, kind)]
    return {"type": kind, **kept}


_TYPED = set().union(*APPLIES.values())


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}


NOW = document()
OPERATIONS = sorted(_operations(BEFORE))


def test_the_same_routes_are_described() -> None:
    assert sorted(_operations(NOW)) == OPERATIONS


def _params(op: dict[str, Any], doc: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (p["name"], p["in"]): (p["required"], p.get("allowEmptyValue", False), canonical(p["schema"], doc))
        for p in op.get("parameters", [])
    }


def _body(op: dict[str, Any], doc: dict[str, Any]) -> Any:
    body = op.get("requestBody")
    if body is None:
        return None
    media = {name: canonical(content["schema"], doc) for name, content in body["content"].items()}
    return body.get("required", False), media


def _answers(op: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    return {
        code: {name: canonical(content["schema"], doc) for name, content in answer.get("content", {}).items()}
        for code, answer in op["responses"].items()
    }


SCOPE_ANSWERS = {"403", "429"}


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_each_operation_means_what_it_meant(path: str, method: str) -> None:
    before, now = BEFORE["paths"][path][method], NOW["paths"][path][method]
    for key in ("operationId", "tags"):
        assert now.get(key) == before.get(key), key
    # the scopes (SPEC 10.7) came after: each operation names its own now, and may answer 403 and 429
    # (tests/test_scopes.py holds them to poulpe/scopes.py); public stays public
    assert (now.get("security") == []) == (before.get("security") == [])
    now = {
        **now,
        "responses": {c: a for c, a in now["responses"].items() if c not in SCOPE_ANSWERS or c in before["responses"]},
    }
    assert _params(now, NOW) == _params(before, BEFORE)
    assert _body(now, NOW) == _body(before, BEFORE)
    assert sorted(now["responses"]) == sorted(before["responses"])
    assert _answers(now, NOW) == _answers(before, BEFORE)


def test_the_canonical_form_keeps_differences_that_matter() -> None:
    """The comparison is not blind: a bound, a required field or a refused extra field still tells schemas apart."""
    empty: dict[str, Any] = {"components": {"schemas": {}}}
    number = {"type": ["number", "null"], "minimum": 0}
    assert canonical(number, empty) == canonical({"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}, empty)
    assert canonical(number, empty) != canonical({"type": ["number", "null"], "minimum": 1}, empty)
    strict = {"type": "object", "properties": {"a": {}}, "required": ["a"], "additionalProperties": False}
    assert canonical(strict, empty) != canonical({**strict, "required": []}, empty)
    assert canonical(strict, empty) != canonical({**strict, "additionalProperties": True}, empty)


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(document(), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
