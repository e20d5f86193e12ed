"""What the SQLite writer thread spends per job row, by the form of the outcome's write (not a report measurement).

`python -m bench.writer_rows [--jobs 20000] [--group 64] [--rounds 3]`: jobs are inserted in batches of 1,000 (as
the e2e run posts them), then each job's outcome is written in transactions of `--group` jobs, in this thread,
with poulpe's own statements (poulpe/store/sqlite_writer.py) and pragmas (WAL, synchronous=FULL). The thread's CPU
per outcome row is printed for each form, the forms interleaved round by round:

- `upsert`: poulpe's write today, the whole record again (`INSERT ... ON CONFLICT (id) DO UPDATE`);
- `update`: the same values through a plain `UPDATE ... WHERE id = ?`;
- `narrow column`: the record's submitted part left as it is, the outcome's fields (status, attempts, times,
  result, history) in a column of their own;
- `narrow table`: those fields in a table of their own, the jobs row's status and finish time updated;
- `no status/finished index`: the upsert without those two indexes (what they cost; queries need them).

It answers whether splitting the record in the schema, so that an outcome writes only what it changes, would cut
the writer's CPU: SQLite rewrites a whole row whatever the columns an UPDATE names, so the narrow forms save only
the encoding of the submitted part, while the pages a commit writes (the status index, the finish-time index, the
table's pages) stay (bench/notes.md, 2026-12-05).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from poulpe.job import Job, Method, Status
from poulpe.store.sqlite import SCHEMA
from poulpe.store.sqlite_files import connect
from poulpe.store.sqlite_writer import Insert, Update, insert_run, update_run
from poulpe.validate import new_id

RESULT = {"status_code": 200, "headers": {"Content-Type": "text/plain", "Content-Length": "2"}, "body": "ok"}
FORMS = ("upsert", "update", "narrow column", "narrow table", "no status/finished index")


def _jobs(n: int) -> list[Job]:
    now = time.time()
    return [
        Job(id=new_id(), method=Method.GET, name="http://127.0.0.1:8000/job", seq=i + 1, created_at=now, run_at=now)
        for i in range(n)
    ]


def _end(job: Job) -> None:
    job.begin_attempt(3, "node:1", job.created_at + 0.001)
    job.end_attempt(True, None, job.created_at + 0.002)
    job.result, job.status, job.finished_at = RESULT, Status.SUCCEEDED, job.created_at + 0.002


def _state(job: Job) -> bytes:
    """The fields an outcome changes, alone."""
    fields = ("status", "attempts", "failures", "started_at", "finished_at", "first_started_at", "result", "error")
    return msgspec.json.encode({**{name: getattr(job, name) for name in fields}, "history": job.history})


def _writer(form: str, conn: Any) -> Callable[[list[Job]], object]:
    if form == "update":
        sql = "UPDATE jobs SET status = ?, finished_at = ?, data = ? WHERE id = ?"
        return lambda jobs: conn.executemany(sql, [(r[2], r[6], r[7], r[0]) for r in (Update(j).row for j in jobs)])
    if form == "narrow column":
        conn.execute("ALTER TABLE jobs ADD COLUMN state BLOB")
        sql = "UPDATE jobs SET status = ?, finished_at = ?, state = ? WHERE id = ?"
        return lambda jobs: conn.executemany(sql, [(j.status.value, j.finished_at, _state(j), j.id) for j in jobs])
    if form == "narrow table":
        conn.execute("CREATE TABLE states (job TEXT PRIMARY KEY, data BLOB NOT NULL)")
        sql = "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ?"

        def write(jobs: list[Job]) -> None:
            conn.executemany(sql, [(j.status.value, j.finished_at, j.id) for j in jobs])
            conn.executemany("INSERT INTO states VALUES (?, ?)", [(j.id, _state(j)) for j in jobs])

        return write
    if form == "no status/finished index":
        conn.execute("DROP INDEX jobs_status")
        conn.execute("DROP INDEX jobs_finished")
    return lambda jobs: update_run(conn, [Update(job) for job in jobs])


def one(form: str, n: int, group: int, folder: Path) -> tuple[float, float]:
    """CPU µs per job of the inserts and of the outcomes, in this thread."""
    path = folder / f"{form.replace(' ', '-').replace('/', '-')}.db"
    conn = connect(path)
    conn.executescript(SCHEMA)
    write = _writer(form, conn)
    jobs = _jobs(n)
    start = time.thread_time()
    for first in range(0, n, 1000):
        insert_run(conn, [Insert(jobs[first : first + 1000])])
    inserted = time.thread_time()
    for job in jobs:
        _end(job)
    ended = time.thread_time()
    for first in range(0, n, group):
        conn.execute("BEGIN IMMEDIATE")
        write(jobs[first : first + group])
        conn.execute("COMMIT")
    done = time.thread_time()
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return (inserted - start) / n * 1e6, (done - ended) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=64, help="outcomes per transaction")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    outcome: dict[str, list[float]] = {form: [] for form in FORMS}
    with tempfile.TemporaryDirectory(prefix="poulpe-writer-rows-") as folder:
        for round_ in range(args.rounds):
            for form in FORMS if round_ % 2 == 0 else reversed(FORMS):
                insert_us, outcome_us = one(form, args.jobs, args.group, Path(folder))
                outcome[form].append(outcome_us)
                print(f"round {round_} {form}: insert {insert_us:.1f} µs/job, outcome {outcome_us:.1f} µs/job")
    print(f"load average {os.getloadavg()[0]:.1f}; median CPU µs per outcome row, {args.group} a transaction:")
    for form, values in outcome.items():
        print(f"  {form:<26} {statistics.median(values):5.1f}")


if __name__ == "__main__":
    main()
