"""What a run reports while it goes: typed events, each a frozen dataclass.

A run (build/run.py, verify/run.py, publish/run.py) returns its results and, on the way,
hands events to the one `Emit` it is given; it never prints. The event types of each stage
are in that stage's `events.py` (build/, verify/, publish/); the one renderer,
`commands/_render.py`, turns them into output: rich (colour, the live build table) on a
terminal, plain lines otherwise. This module is in the lowest layer, so every stage can
import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """What every event is; the stages' events subclass it."""


Emit = Callable[[Event], None]


def discard(event: Event) -> None:
    """An `Emit` for callers that want only the results."""
