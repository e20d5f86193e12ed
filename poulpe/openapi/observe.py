"""The table of the operator's views added with alerts and the dashboard's charts, as /openapi.json describes them
(kept apart from routes.py, which holds the rest of poulpe's own routes)."""

from __future__ import annotations

from poulpe.openapi.answers import Alerts, History
from poulpe.openapi.build import Answer, Op
from poulpe.openapi.routes import errors

OBSERVE = [
    Op(
        "get",
        "/alerts",
        "alerts",
        "Alerts raised here (late, slow, lease_lost, dead): counts, the latest 100, delivery",
        answers={200: Answer(Alerts, "Alerts"), **errors()},
    ),
    Op(
        "get",
        "/history",
        "history",
        "The dashboard's charts: a point a second (10 min) and a minute (6 h), fields named once",
        answers={200: Answer(History, "History"), **errors()},
    ),
]
