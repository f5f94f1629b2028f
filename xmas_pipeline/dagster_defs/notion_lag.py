"""The Notion lag, watched on a clock: `notion_sync_sensor` calls this at every tick, so
`notion_in_sync` turns red even when no sync run can happen (a run that died holding the
queue, Notion down, a revoked token), and ops hear of it once per episode.

- The check: the sensor reports an evaluation of `notion_in_sync` (no run needed) when its
  verdict differs from the latest one recorded: red once the oldest waiting change is
  older than XMAS_NOTION_MAX_LAG_SECONDS, green again once it is not. A sync run reports
  the check too, at its end.
- The alert: an episode starts when the lag first goes over the limit. Its start is kept in
  the store (`notion_state`) before its alert is enqueued under a key made from it, so a
  tick that dies in between enqueues the same alert again (a no-op) instead of a second
  one. Its end enqueues a note that Notion is in step again, then clears the start.
"""

from datetime import datetime
from typing import Any

import dagster as dg

from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import AlertOutbox, QueueStats
from xmas_pipeline.services.ops_alerts import notion_caught_up_alert, notion_lag_alert

ASSET = dg.AssetKey("notion_email_sequence")
CHECK_NAME = "notion_in_sync"
CHECK = dg.AssetCheckKey(ASSET, CHECK_NAME)


def lag_seconds(stats: QueueStats, now: datetime) -> float:
    if stats.oldest_queued_at is None:
        return 0.0
    return max(0.0, (now - stats.oldest_queued_at).total_seconds())


def in_sync_metadata(lag: float, max_lag: float, stats: QueueStats) -> dict[str, Any]:
    return {
        "oldest change waiting (s)": round(lag, 1),
        "allowed (s)": max_lag,
        "queue depth": stats.depth,
        "contacts with an error": stats.failing,
    }


def check_events(
    instance: dg.DagsterInstance, lag: float, max_lag: float, stats: QueueStats
) -> list[dg.AssetCheckEvaluation]:
    """The evaluation to report now: only when the verdict changed (a red check stays red
    without an event every tick)."""
    latest = instance.get_latest_asset_check_evaluation_record(CHECK)
    red_now = latest is not None and latest.status.value == "FAILED"
    passed = lag <= max_lag
    if passed != red_now:
        return []
    description = (
        "Notion is in step again"
        if passed
        else f"Notion is {lag:.0f} s behind the store ({stats.depth} contacts waiting)"
    )
    return [
        dg.AssetCheckEvaluation(
            asset_key=ASSET,
            check_name=CHECK_NAME,
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={**in_sync_metadata(lag, max_lag, stats), "seen by": "notion_sync_sensor"},
            description=description,
        )
    ]


def watch_episode(
    pages: SqlNotionPages,
    outbox: AlertOutbox | None,
    campaign: Campaign,
    *,
    lag: float,
    max_lag: float,
    stats: QueueStats,
    now: datetime,
) -> str:
    """Start or end a lag episode, with its alerts (none without an `outbox`); returns
    the open episode's start ("" when Notion is in step)."""
    name = f"lag-episode:{campaign.slug}"
    episode = pages.state(name) or ""
    if lag > max_lag:
        if not episode:
            episode = now.isoformat(timespec="seconds")
            pages.set_state(name, episode)
        if outbox is not None:
            outbox.enqueue([notion_lag_alert(episode, lag, max_lag, stats)])
        return episode
    if episode:
        if outbox is not None:
            outbox.enqueue([notion_caught_up_alert(episode, lag)])
        pages.set_state(name, "")
    return ""
