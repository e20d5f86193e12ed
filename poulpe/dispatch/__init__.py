"""The dispatch engine: the one place that decides which due job a free worker takes.

`order.py` holds the ordering rule, `timer.py` the due-time heap, `ready.py` the ready structure workers pull
from (cc, priorities, key turns), `local.py` and `shared.py` the two feeds that fill it (the embedded store's own
schedule, or claims on a schedule shared through Redis), `events.py` the bus parts react on.
"""
