"""Telling ops: a send run that failed, a run marked failed because its worker died, an
ingestion run that failed for good, messages still unsent well past their due time.

Each alert goes once (the alert ledger, shared by every host, remembers it) and carries no
secret: failure messages are scrubbed of credentials before they are posted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from xmas_pipeline.adapters.chat_webhook import format_ops_alert, post_alert
from xmas_pipeline.core.ports import AlertLedger

Poster = Callable[[str, dict[str, object]], None]

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


def post_once(
    ledger: AlertLedger,
    key: str,
    url: str,
    title: str,
    lines: list[str],
    post: Poster = post_alert,
) -> bool:
    """Post unless this key went out already; marked only once the webhook accepted it,
    so a failed post is tried again. True when it was posted now."""
    if ledger.seen(key):
        return False
    post(url, format_ops_alert(title, [scrub(line) for line in lines]))
    ledger.mark(key)
    return True


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
        "Check send_schedule, the last send runs and the deliveries asset's problems.",
    ]
