"""Inbox retention: raw files are kept only as long as they are useful.

A day folder older than the retention is removed once its ingestion succeeded after its
last file arrived (so nothing received is lost before it is in the store). A day never
ingested, with a file newer than its last ingestion, or holding a file for a campaign
that is not loaded (kept waiting by ingestion), is kept and reported.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from xmas_pipeline.adapters.inbox import KINDS, Inbox

# (kind, day) -> when that day's ingestion last succeeded, or None.
IngestedAt = Callable[[str, str], datetime | None]


@dataclass
class RetentionReport:
    cutoff: str  # days before this are past retention
    removed_files: dict[str, int] = field(default_factory=dict)  # kind -> files
    removed_days: list[str] = field(default_factory=list)  # "signups/2025-11-03"
    kept_days: list[dict[str, str]] = field(default_factory=list)  # {"day", "reason"}


def cutoff_day(today: date, retention_days: int) -> str:
    return (today - timedelta(days=retention_days)).isoformat()


def prune_inbox(
    inbox: Inbox,
    cutoff: str,
    ingested_at: IngestedAt,
    waiting: Collection[tuple[str, str]] = (),
) -> RetentionReport:
    """`waiting`: (kind, day) of days holding a file for a campaign that is not loaded,
    kept until it loads and takes them."""
    report = RetentionReport(cutoff=cutoff)
    for kind in KINDS:
        for day in inbox.days(kind):
            if day >= cutoff:
                continue
            files = inbox.files(kind, day)
            at = ingested_at(kind, day)
            newest = max((f.received_at for f in files), default=None)
            if at is None:
                report.kept_days.append({"day": f"{kind}/{day}", "reason": "never ingested"})
                continue
            if (kind, day) in waiting:
                reason = "holds a file for a campaign that is not loaded"
                report.kept_days.append({"day": f"{kind}/{day}", "reason": reason})
                continue
            if newest is not None and newest > at:
                reason = "a file arrived after its last ingestion"
                report.kept_days.append({"day": f"{kind}/{day}", "reason": reason})
                continue
            count = inbox.remove_day(kind, day)
            report.removed_files[kind] = report.removed_files.get(kind, 0) + count
            report.removed_days.append(f"{kind}/{day}")
    return report
