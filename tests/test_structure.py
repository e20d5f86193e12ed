"""poulpe's structure, measured from its source with `ast` (docs/design.md, "Measures of the structure").

A newcomer adding a module gives it a layer below; these tests say when an import points the wrong way, a module
outgrows its seam, a name meant to stay inside its module is taken from outside, or a route reaches into the
manager's store.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "poulpe"
MAX_LINES = 400

# Lowest first; a module may import from its own layer or a lower one. A prefix names a package and what is in it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "record and ground rules",
        {"poulpe", "job", "errors", "settings", "flags", "kafka_flags", "keys", "logs", "log_filters", "flag_hints"}
        | {"flag_parser", "scopes", "tokens", "bursts"},
    ),
    # parts with one job each that know no manager; dispatch.order is the one ordering rule, which the stores follow
    # tracing: trace context the runners pass on; tracing_otel: attempt spans (tracing on), span_pipe and
    # span_export: their hand-off to the span export process and that process; history: the charts
    (
        "parts",
        {"checks", "outbound", "responses", "metrics", "deadletter", "store", "runners", "dispatch.order"}
        | {"chain_refs", "labels", "batch_record", "action_record", "action_pace", "job_in"}
        | {"tracing", "tracing_otel", "span_pipe", "span_export", "history", "hangup", "quotas", "token_file"}
        | {"cron_options", "aborts"},
    ),
    (
        "engine",
        {"dispatch", "workers", "outcome", "deadjobs", "queries", "manager", "validate", "external"}
        | {"alerts", "deadlines", "debounce", "chains", "batches", "actions", "dead_retry"},
    ),
    (
        "intakes and routes",
        {
            "intake",
            "compat",
            "api",
            "api_workers",
            "keys_api",
            "batches_api",
            "actions_api",
            "ops_api",
            "auth",
            "tenants",
            "cron",
            "crontab",
            "cron_replace",
            "cron_api",
            "cron_metrics",
            "callbacks",
            "openapi",
            "dashboard",
        },
    ),
    (
        "assembly and entry points",
        {"app", "service", "server", "http_protocol", "cli", "cron_check", "ops_cli", "ops_client", "__main__"}
        | {"token_cli", "cron_cli", "ops_actions"},
    ),
]

# Known exceptions, each with the reason it stands; the list only shrinks (and is empty: keep it so).
CYCLES_LEFT: set[frozenset[str]] = set()

# What a route or an intake may not take from the manager: its store, dead letters and engine parts.
MANAGER_INSIDES = {"store", "dead", "dead_jobs", "feed", "ready", "workers", "finish"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(module: str, names: dict[str, Path]) -> str | None:
    while module and module not in names:
        module = module.rpartition(".")[0]
    return module or None


def _imports(module: str) -> Iterator[tuple[str, str, int]]:
    """(imported poulpe module, imported name or '', line) for every import in `module`, in functions too."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, MODULES)
                if target:
                    yield target, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base != "poulpe" and not base.startswith("poulpe."):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (
                    (full, "", node.lineno)
                    if full in MODULES
                    else (_owner(base, MODULES) or base, alias.name, node.lineno)
                )


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None  # (length of the matching name, layer): the longest match wins
    short = module.removeprefix("poulpe.") if module != "poulpe" else "poulpe"
    for number, (_, names) in enumerate(LAYERS):
        for name in names:
            matches = short == name or short.startswith(name + ".")
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), number)
    if best is None:
        raise LookupError(module)
    return best[1]


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            _layer(module)
        except LookupError:
            unplaced.append(module)
    assert unplaced == [], "give these modules a layer in tests/test_structure.py and docs/design.md"


def test_no_import_points_up_a_layer() -> None:
    upward = [
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]}) at line {line}"
        for m in MODULES
        for t, _, line in _imports(m)
        if _layer(t) > _layer(m)
    ]
    assert upward == []


def test_no_import_cycle_beyond_the_known_ones() -> None:
    cycles = [frozenset(c) for c in _cycles(_graph())]
    assert [sorted(c) for c in cycles if c not in CYCLES_LEFT] == []
    assert set(cycles) == CYCLES_LEFT, "a known cycle is gone: take it off CYCLES_LEFT"


def test_no_private_name_is_imported_from_another_module() -> None:
    taken = [
        f"{m} imports {name} from {t} at line {line}"
        for m in MODULES
        for t, name, line in _imports(m)
        if name.startswith("_") and not name.startswith("__") and t != m
    ]
    assert taken == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_outgrows_its_seam(module: str) -> None:
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    relative = str(path.relative_to(ROOT))
    assert lines <= MAX_LINES, f"{relative} has {lines} lines: split it along its seams"


def test_routes_and_intakes_ask_the_manager_and_never_reach_into_it() -> None:
    route_layer = next(n for n, (title, _) in enumerate(LAYERS) if title == "intakes and routes")
    reaches = []
    for module, path in MODULES.items():
        if _layer(module) != route_layer:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in MANAGER_INSIDES
                and "manager" in ast.unparse(node.value)
            ):
                reaches.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert reaches == []


def test_no_six_lines_stand_twice() -> None:
    """The same six lines (stripped; blank lines, comments and imports left out) in two places of poulpe/ are one
    piece of code written twice. `duplicates` (docs/design.md) finds the same shape with other names as well."""
    seen: dict[tuple[str, ...], str] = {}
    twice = []
    for module, path in MODULES.items():
        lines = [
            (number, text.strip())
            for number, text in enumerate(path.read_text().splitlines(), 1)
            if text.strip() and not text.strip().startswith(("#", "import ", "from "))
        ]
        for i in range(len(lines) - 5):
            window = tuple(text for _, text in lines[i : i + 6])
            if sum(len(text) > 3 for text in window) < 6:
                continue  # closing brackets and bare keywords: shape, not logic
            where = f"{module}:{lines[i][0]}"
            if window in seen:
                twice.append(f"{seen[window]} ~ {where}")
            seen.setdefault(window, where)
    assert twice == [], "\n".join(twice)
