"""A clock the test moves: time-based rules (backoffs, lag limits, timestamps' resolution)
are tested by moving time forward, never by sleeping. The clock keeps running at its real
pace between moves, so code that polls or times out still sees time pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import time_machine


@dataclass
class MovableClock:
    traveller: time_machine.Coordinates

    def advance(self, seconds: float) -> None:
        """Move every clock of this process (time.time, datetime.now, ...) `seconds` on."""
        self.traveller.shift(timedelta(seconds=seconds))


@contextmanager
def movable_clock() -> Iterator[MovableClock]:
    with time_machine.travel(datetime.now(UTC), tick=True) as traveller:
        yield MovableClock(traveller)
