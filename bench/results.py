"""A measurement's figures as recorded in bench/out/<name>.json, and read back by the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Row:
    """One figure, beside its peer or ceiling when it has one."""

    what: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    target: str | None = None
    met: bool | None = None
    peer_unit: str | None = None  # when the peer is counted otherwise (req/s beside jobs/s)

    @property
    def ratio(self) -> float | None:
        if self.peer_value in (None, 0) or self.value is None:
            return None
        assert self.peer_value is not None
        return self.value / self.peer_value


@dataclasses.dataclass
class Result:
    name: str
    title: str
    method: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    taken_at: str = ""
    command: str = ""
    quick: bool = False
    loadavg: str = ""
    duration_s: float = 0.0
    machine: dict[str, str] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row

    def save(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Result:
        data = json.loads(path.read_text())
        data["rows"] = [Row(**row) for row in data.get("rows", [])]
        return cls(**data)


def at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound
