"""Telling ops: a send run that failed, a run marked failed because its worker died, an
ingestion run that failed for good, messages still unsent well past their due time, Notion
falling behind.

Each is an `Alert` for the alert outbox (`services.alert_delivery` posts it until the chat
accepts it), under a key that makes it one alert however often it is enqueued. None
carries a secret: every line is scrubbed of credentials here, before it is stored.
"""

from __future__ import annotations

import hashlib
import re

import pandas as pd

from xmas_pipeline.core.ports import Alert, QueueStats

# user:password@ in URLs, bearer tokens, and the key shapes of the services we call.
_SECRETS = [
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE), r"\1***@"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"\b(re|secret|ntn|cal|whsec|sk)_[A-Za-z0-9_-]{6,}"), "***"),
]


def scrub(text: str) -> str:
    """The text without credentials (URL passwords, tokens, API keys)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def ops_alert(key: str, title: str, lines: list[str]) -> Alert:
    """An ops alert for the outbox, its text scrubbed of credentials."""
    return Alert(key=key, kind="ops", title=scrub(title), lines=tuple(scrub(x) for x in lines))


def run_failed_key(run_id: str) -> str:
    return f"run-failed:{run_id}"


def stuck_key(message_id: str) -> str:
    """The key noted for one message once an alert announced it stuck."""
    return f"stuck:{message_id}"


def stuck_alert(stuck: pd.DataFrame) -> Alert:
    """One alert for these newly stuck messages: its key comes from their ids, so enqueued
    again (a tick that died before it noted them) it is the same alert."""
    ids = "\n".join(sorted(str(m) for m in stuck["message_id"]))
    digest = hashlib.sha256(ids.encode()).hexdigest()[:20]
    return ops_alert(f"stuck-alert:{digest}", "Messages are stuck unsent", stuck_lines(stuck))


def run_failed_lines(job: str, run_id: str, reason: str, ui_url: str = "") -> list[str]:
    lines = [f"Job: {job}", f"Run: {run_id}", f"Why: {reason.strip()[:800] or 'no reason given'}"]
    if ui_url:
        lines.append(f"Open: {ui_url.rstrip('/')}/runs/{run_id}")
    return lines


def stuck_lines(stuck: pd.DataFrame) -> list[str]:
    """A summary of messages due long ago and still unsent: counts per step, the oldest."""
    by_step = stuck.groupby("step_id").size().sort_index()
    oldest = pd.Timestamp(stuck["due_at"].min()).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"{len(stuck)} message(s) still unsent past their due time (oldest due {oldest})",
        "By step: " + ", ".join(f"{step} {count}" for step, count in by_step.items()),
        "Check the campaign's <prefix>__send_schedule, its last send runs and its "
        "deliveries asset's problems.",
    ]


def notion_lag_alert(episode: str, lag: float, allowed: float, stats: QueueStats) -> Alert:
    """Notion has fallen behind the store: one alert per episode (`episode` is when it was
    first seen), whatever the cause."""
    lines = [
        f"The oldest change has waited {lag:.0f} s for Notion (allowed: {allowed:.0f} s).",
        f"{stats.depth} contact(s) waiting, {stats.failing} with an error.",
    ]
    if stats.errors:
        _, attempts, error = stats.errors[0]  # no address in the chat
        lines.append(f"Latest error ({attempts} attempts): {error[:300]}")
    lines.append("Check the sync_notion runs, the Notion token and Notion's status page.")
    return ops_alert(f"notion-lag:{episode}", "Notion is behind the store", lines)


def notion_caught_up_alert(episode: str, lag: float) -> Alert:
    """The end of a lag episode."""
    return ops_alert(
        f"notion-lag-over:{episode}",
        "Notion is in step with the store again",
        [f"Behind since {episode}; the oldest change waiting is now {lag:.0f} s old."],
    )
