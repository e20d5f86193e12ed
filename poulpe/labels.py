"""Labels (SPEC 10.4): a job's `labels`, and the filters of GET /jobs, GET /dead and POST /actions."""

from __future__ import annotations

from typing import Annotated

import msgspec

LABEL_KEY = r"^[a-z0-9_.-]{1,64}\Z"
MAX_LABELS = 16
Labels = Annotated[
    dict[Annotated[str, msgspec.Meta(pattern=LABEL_KEY)], Annotated[str, msgspec.Meta(max_length=256)]],
    msgspec.Meta(max_length=MAX_LABELS),
]
