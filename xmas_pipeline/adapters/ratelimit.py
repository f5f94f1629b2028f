"""A small thread-safe client-side rate limiter, shared by the HTTP adapters.

It schedules requests on a virtual timeline (the generic cell rate algorithm): each
`acquire()` reserves the next free slot under a lock and then sleeps outside it until that
slot, so concurrent callers queue up in order instead of racing. `pause_until()` pushes the
next free slot past a server-given deadline (`Retry-After`, or `ratelimit-reset` when the
server says nothing is left in the window).

The clock and sleep are injectable so tests can run on a virtual clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate_per_s` acquisitions a second on average, up to `burst` at once."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError("rate_per_s must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._interval = 0.0 if math.isinf(rate_per_s) else 1.0 / rate_per_s
        self._tolerance = (burst - 1) * self._interval  # how far ahead a burst may run
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = clock()  # theoretical arrival time of the next request

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited (0.0 when none)."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            wait = max(0.0, tat - self._tolerance - now)
            self._tat = tat + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause_until(self, monotonic_deadline: float) -> None:
        """Grant no slot before `monotonic_deadline` (on this limiter's clock)."""
        with self._lock:
            self._tat = max(self._tat, monotonic_deadline + self._tolerance)
