"""bench/out/*.json → docs/BENCHMARKS.md (and the table printed at the end of a run).

Each measurement keeps its own JSON, so a run of a subset rewrites only its own rows: the others stay as they
were measured, with their own date and command shown beside them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from bench.results import Result, Row

NOTES = Path(__file__).with_name("notes.md")
VERSION_ORDER = ("python", "poulpe", "uvicorn", "starlette", "aiohttp", "httpx", "msgspec", "uvloop", "httptools")


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.0f}x" if row.ratio >= 10 else f"{row.ratio:.0%}"


def peer_cell(row: Row) -> str:
    return number(row.peer_value, row.peer_unit or row.unit) if row.peer_value is not None else ""


def verdict(row: Row) -> str:
    return {True: "yes", False: "**no**", None: ""}[row.met]


def load(out: Path, order: Sequence[str]) -> list[Result]:
    # only the measurements' own files: bench.flows and bench.traces write JSON of their own beside them
    found = {path.stem: Result.load(path) for path in sorted(out.glob("*.json")) if path.stem in order}
    return [found[name] for name in order if name in found]


def text_table(results: Sequence[Result]) -> str:
    """The plain table printed at the end of a run."""
    lines = []
    head = f"{'figure':<52} {'value':>16} {'beside':>16} {'ratio':>6}  {'target':<22} met"
    for result in results:
        lines += ["", f"{result.title} ({result.taken_at}{', quick' if result.quick else ''})", head, "-" * len(head)]
        for row in result.rows:
            peer = peer_cell(row)
            met = {True: "yes", False: "NO", None: ""}[row.met]
            lines.append(
                f"{row.what[:52]:<52} {number(row.value, row.unit):>16} {peer:>16} {ratio(row):>6}  "
                f"{(row.target or '')[:22]:<22} {met}"
            )
        lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _summary(results: Sequence[Result]) -> list[str]:
    lines = [
        "| measurement | figure | value | beside | its value | ratio | target | met |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for result in results:
        for row in result.rows:
            lines.append(
                f"| {result.title} | {row.what} | {number(row.value, row.unit)} | {row.peer or ''} | "
                f"{peer_cell(row)} | {ratio(row)} | {row.target or ''} | {verdict(row)} |"
            )
    return lines


def _section(n: int, result: Result) -> list[str]:
    lines = [
        f"## {n}. {result.title}",
        "",
        f"Measured {result.taken_at}{' (--quick: short durations, not for comparison)' if result.quick else ''}"
        f" with `{result.command}`, in {result.duration_s:.0f} s; 1-minute load average at its start:"
        f" {result.loadavg}.",
        "",
        result.method,
        "",
        "| figure | value | beside | its value | ratio | target | met |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {row.what} | {number(row.value, row.unit)} | {row.peer or ''} | "
            f"{peer_cell(row)} | {ratio(row)} | {row.target or ''} | {verdict(row)} |"
        )
    if result.notes:
        lines.append("")
        lines += [f"- {note}" for note in result.notes]
    lines.append("")
    return lines


def render(results: Sequence[Result], order: Sequence[str], *, quick: bool) -> str:
    newest = max(results, key=lambda r: r.taken_at)
    versions = newest.versions
    machine = newest.machine
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (run it as `./bench/run.sh`, which installs what the bench needs first);"
        " do not edit by hand: the next run rewrites this file from `bench/out/*.json`, which are committed, so"
        " a subset run on a fresh clone keeps the other sections' figures.",
        "",
        f"Last written {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}."
        + (" **--quick run: short durations, figures not for comparison.**" if quick else ""),
        "",
        "- Run everything: `./bench/run.sh` (about 10 minutes on 2 cores). A subset: `./bench/run.sh intake"
        " lateness`. Short durations for development: `./bench/run.sh --quick` (writes to `bench/out/quick/`,"
        " leaves this file alone).",
        "- Everything runs on loopback, on free ports; poulpe always runs as its own `poulpe` command in a"
        " subprocess, on a SQLite file and dead-letter directory of its own in a temporary directory.",
        "- Every section says when it was measured and the machine's load average then: figures taken while"
        " other work ran on the machine are lower than a quiet machine gives.",
        "",
        "## Machine and versions",
        "",
        f"- Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('ram', '?')} RAM,"
        f" Linux {machine.get('kernel', '?')}.",
        "- Versions: "
        + ", ".join(f"{name} {versions[name]}" for name in VERSION_ORDER if name in versions)
        + f", SQLite {versions.get('sqlite', '?')}, wrk {versions.get('wrk', '?')}.",
    ]
    others = {r.title for r in results if r.versions != versions or r.machine != machine}
    if others:
        lines.append(
            "- Measured with other versions or on another machine (see their JSON in bench/out/): "
            + ", ".join(sorted(others))
            + "."
        )
    lines += ["", "## Summary", "", *_summary(results), ""]
    for result in results:
        lines += _section(order.index(result.name) + 1, result)
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    return "\n".join(lines)


def write(out: Path, path: Path, order: Sequence[str], *, quick: bool) -> list[Result]:
    results = load(out, order)
    if results:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(results, order, quick=quick))
    return results
