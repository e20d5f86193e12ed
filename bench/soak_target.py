"""The soak's HTTP target: answers `200 ok` at once and counts the calls per `Poulpe-Job-Id`.

`GET /__counts` answers those counts as JSON, so the soak can tell jobs that ran twice from jobs that never ran.
Run as `python -m bench.soak_target --port N`.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import uvicorn

_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
counts: Counter[str] = Counter()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if scope["path"] == "/__counts":
        body = json.dumps(counts).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    job_id = dict(scope["headers"]).get(b"poulpe-job-id")
    if job_id is not None:
        counts[job_id.decode()] += 1
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="httptools", lifespan="off", access_log=False,
                log_level="warning", server_header=False, date_header=False, backlog=4096)  # fmt: skip


if __name__ == "__main__":
    main()
