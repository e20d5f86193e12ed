"""Pieces the OpenAPI descriptions of the worker and compatibility routes share."""

from __future__ import annotations

from typing import Any

STR = {"type": "string"}
INT = {"type": "integer"}
NUMBERISH = {"type": ["number", "string", "null"]}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def unauthorized() -> dict[str, Any]:
    return {"401": json_answer({"$ref": "#/components/schemas/Error"}, "Missing or wrong bearer token")}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
