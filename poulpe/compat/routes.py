"""The routes of the compatibility intakes, for app.py to mount in one line."""

from __future__ import annotations

from starlette.routing import Route

from poulpe import api_workers
from poulpe.compat import easytask, kingtask


def routes() -> list[Route]:
    """Also the external workers' own routes (poulpe/api_workers.py), which easyTask's routes are mapped onto."""
    return [
        *api_workers.routes(),
        Route("/api/v1/task", kingtask.script, methods=["POST"]),
        Route("/api/v1/task/script", kingtask.script, methods=["POST"]),
        Route("/api/v1/task/rpc", kingtask.rpc, methods=["POST"]),
        Route("/api/v1/task/result/{id}", kingtask.result, methods=["GET"]),
        Route("/api/v1/task/count/undo", kingtask.count_undo, methods=["GET"]),
        Route("/api/v1/task/result/success/{date}", kingtask.count_success, methods=["GET"]),
        Route("/api/v1/task/result/failure/{date}", kingtask.count_failure, methods=["GET"]),
        Route("/api/putask/{type}", easytask.put_task, methods=["PUT"]),
        Route("/querytask", easytask.query_task, methods=["GET"]),
        Route("/updatetask", easytask.update_task, methods=["POST"]),
        Route("/sayhi", easytask.say_hi, methods=["GET"]),
        Route("/beat", easytask.beat, methods=["GET"]),
        Route("/newtype", easytask.new_type, methods=["GET"]),
    ]
