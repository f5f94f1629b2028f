"""Signup rate limits as a pure rule: "N/period" parsing, sliding-window arithmetic and the
wait a refused caller is told (`Retry-After`).

The window is a sliding-window counter: hits are counted per fixed window of `period`
seconds, and the rate at a moment is the current window's count plus the previous
window's, weighted by how much of the previous window still lies within one period of
now. It needs two counters per key, never a log of every hit, and has no burst of twice
the limit at a window boundary the way a plain fixed window does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")
OFF = ("", "0", "off", "none", "unlimited")
MAX_PERIOD_S = 7 * 86400


@dataclass(frozen=True)
class Rate:
    """At most `limit` hits per `period_s` seconds."""

    limit: int
    period_s: int

    def __str__(self) -> str:
        for name in ("day", "hour", "minute"):
            size = UNITS[name]
            if self.period_s % size == 0:
                count = self.period_s // size
                return f"{self.limit}/{name}" if count == 1 else f"{self.limit}/{count}{name}"
        return f"{self.limit}/{self.period_s}second"


def parse_rate(text: str) -> Rate | None:
    """`"20/hour"`, `"5/10min"`, `"100/day"`, `"3/30s"` -> a `Rate`; `"0"`/`"off"` -> None
    (no limit). Raises ValueError for anything else."""
    value = text.strip().lower()
    if value in OFF:
        return None
    found = _RATE.match(value)
    unit = UNITS.get(found.group(3)) if found else None
    if found is None or unit is None:
        raise ValueError(
            "must be <count>/<period>, e.g. 20/hour, 5/10min, 100/day (or 0/off for none)"
        )
    limit, count = int(found.group(1)), int(found.group(2) or 1)
    if limit == 0:
        return None
    period = count * unit
    if not 1 <= period <= MAX_PERIOD_S:
        raise ValueError("the period must be between 1 second and 7 days")
    return Rate(limit, period)


def email_key(address: str) -> str:
    """What a per-address limit counts by: the address in lower case, without a `+tag`
    (`jane+1@x` and `jane+2@x` reach one mailbox, which the limit is there to protect)."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local.split('+', 1)[0] or local}@{domain}"


@dataclass(frozen=True)
class Window:
    """Where a moment falls: the current window's start and how far into it (0..1)."""

    start: int
    elapsed: float
    period_s: int

    @property
    def previous_start(self) -> int:
        return self.start - self.period_s


def window_at(rate: Rate, now: float) -> Window:
    start = int(now // rate.period_s) * rate.period_s
    return Window(start=start, elapsed=(now - start) / rate.period_s, period_s=rate.period_s)


def room(rate: Rate, previous: int, window: Window) -> int:
    """How many hits the current window may hold at this moment, given the previous
    window's count: a hit is allowed while `current < room`."""
    return math.floor(rate.limit - previous * (1.0 - window.elapsed) + 1e-9)


def allowed(rate: Rate, previous: int, current: int, window: Window) -> bool:
    """Whether one more hit is allowed (the rate including it stays within the limit)."""
    return current < room(rate, previous, window)


def retry_after(rate: Rate, previous: int, current: int, now: float) -> int:
    """Whole seconds (at least 1) until one more hit would be allowed, if nobody else hits
    the same key in between."""
    window = window_at(rate, now)
    period = rate.period_s
    if current + 1 <= rate.limit and previous > 0:
        # Later in this window the previous one weighs less: when is there room?
        needed = 1.0 - (rate.limit - current - 1) / previous
        wait = window.start + needed * period - now
    else:
        # Only after this window ends, when the current count becomes the previous one.
        needed = 1.0 - (rate.limit - 1) / current if current > 0 else 0.0
        wait = window.start + period + max(0.0, needed) * period - now
    seconds = max(1, math.ceil(wait - 1e-9))
    # Never promise less than the truth: step past any rounding edge.
    while not allowed(rate, *_counts_at(rate, previous, current, now, now + seconds)):
        seconds += 1
    return seconds


def _counts_at(
    rate: Rate, previous: int, current: int, now: float, later: float
) -> tuple[int, int, Window]:
    """The (previous, current) counts and window at `later`, with no hit in between."""
    here, there = window_at(rate, now), window_at(rate, later)
    if there.start == here.start:
        return previous, current, there
    if there.start == here.start + rate.period_s:
        return current, 0, there
    return 0, 0, there
