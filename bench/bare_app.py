"""The ceiling for intake: the same Starlette + uvicorn set-up as poulpe, answering without storing.

One POST route that reads the body, decodes the JSON with msgspec and answers 202 JSON; uvicorn with httptools,
access log off, the same uvicorn.Config as `poulpe.cli.serve`. Run as `python -m bench.bare_app --port N`.
"""

from __future__ import annotations

import argparse
import time
import uuid

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_encoder = msgspec.json.Encoder()


async def task_in_queue(request: Request) -> Response:
    body = msgspec.json.decode(await request.body())
    jobs = body if isinstance(body, list) else [body]
    now = time.time()
    answers = [
        {"result": "OK", "id": str(uuid.uuid4()), "status": "scheduled", "run_at": now + job.get("delay", 0)}
        for job in jobs
    ]
    return Response(
        _encoder.encode(answers if isinstance(body, list) else answers[0]),
        status_code=202,
        media_type="application/json",
    )


async def health(request: Request) -> Response:
    return Response(b'{"ok": true}', media_type="application/json")


app = Starlette(routes=[Route("/task_in_queue", task_in_queue, methods=["POST"]), Route("/health", health)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
