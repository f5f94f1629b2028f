"""The sending domain's reputation: bounce and complaint rates over a rolling window.

Mailbox providers judge a domain by the share of its mail that hard-bounces or is marked
as spam (Resend warns at 4% bounces and 0.08% complaints; Gmail's bulk-sender rules draw
the line at 0.3% complaints). The rates are counted over the emails *sent* in the window:
of those, how many hard-bounced, how many drew a complaint. Below a minimum number sent
no rate counts (three bounces of the first twenty emails say little).

The window starts at the later of `now - window` and the last time sending was resumed,
so a person who resumed after a pause starts a fresh count: the guard judges the mail
sent since their fix, not the mail that caused the pause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd

Level = Literal["too_few", "ok", "warn", "pause"]
_ORDER: dict[str, int] = {"too_few": 0, "ok": 0, "warn": 1, "pause": 2}


@dataclass(frozen=True)
class ReputationLimits:
    """Rates are fractions (0.04 is 4%)."""

    window: timedelta = timedelta(days=7)
    min_sent: int = 200
    warn_bounce: float = 0.04
    warn_complaint: float = 0.0008
    pause_bounce: float = 0.08
    pause_complaint: float = 0.003


@dataclass(frozen=True)
class ReputationCounts:
    since: datetime
    until: datetime
    sent: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Reputation:
    counts: ReputationCounts
    limits: ReputationLimits
    level: Level
    reasons: tuple[str, ...] = ()

    @property
    def alarming(self) -> bool:
        return _ORDER[self.level] > 0

    def describe(self) -> str:
        c = self.counts
        rates = (
            f"bounce rate {pct(c.bounce_rate)} ({c.bounced} of {c.sent} sent), "
            f"complaint rate {pct(c.complaint_rate)} ({c.complained} of {c.sent})"
        )
        if self.level == "too_few":
            return (
                f"{c.sent} sent since {c.since:%Y-%m-%d %H:%M} UTC: under the minimum of "
                f"{self.limits.min_sent}, no rate counts yet"
            )
        if not self.reasons:
            return f"{rates}: within limits"
        return "; ".join(self.reasons)


def pct(rate: float) -> str:
    """A rate as a percent, precise enough for the 0.08% line."""
    return f"{rate * 100:.2f}%"


def window_start(now: datetime, window: timedelta, resumed_at: datetime | None) -> datetime:
    start = now - window
    return max(start, resumed_at) if resumed_at is not None else start


def count_window(
    sent: pd.DataFrame, events: pd.DataFrame, since: datetime, until: datetime
) -> ReputationCounts:
    """`sent`: the messages with `provider_id` and `sent_at`; `events`: email events with
    `provider_id` and `kind`. A message counts once as bounced and once as complained
    however many events it had, and only when it was itself sent in the window."""
    in_window = sent[(sent["sent_at"] >= since) & (sent["sent_at"] <= until)]
    ids = set(in_window["provider_id"]) - {""}

    def messages_with(kind: str) -> int:
        hits = events[(events["kind"] == kind) & events["provider_id"].isin(ids)]
        return int(hits["provider_id"].nunique())

    return ReputationCounts(
        since=since,
        until=until,
        sent=len(in_window),
        bounced=messages_with("bounced"),
        complained=messages_with("complained"),
    )


def assess(counts: ReputationCounts, limits: ReputationLimits) -> Reputation:
    """The level the rates reach: pause over a pause line, warn over a warn line."""
    if counts.sent < limits.min_sent:
        return Reputation(counts, limits, "too_few")
    level: Level = "ok"
    reasons: list[str] = []
    for name, rate, count, warn, pause in (
        ("bounce", counts.bounce_rate, counts.bounced, limits.warn_bounce, limits.pause_bounce),
        (
            "complaint",
            counts.complaint_rate,
            counts.complained,
            limits.warn_complaint,
            limits.pause_complaint,
        ),
    ):
        if rate >= pause:
            line, hit = pause, "pause"
        elif rate >= warn:
            line, hit = warn, "warn"
        else:
            continue
        reasons.append(
            f"{name} rate {pct(rate)} ({count} of {counts.sent} sent since "
            f"{counts.since:%Y-%m-%d %H:%M} UTC) is at or over the {hit} line of {pct(line)}"
        )
        if _ORDER[hit] > _ORDER[level]:
            level = "pause" if hit == "pause" else "warn"
    return Reputation(counts, limits, level, tuple(reasons))
