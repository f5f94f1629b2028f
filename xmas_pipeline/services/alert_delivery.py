"""Posting the alert outbox to the chat: each alert until the chat accepts it, once.

Due alerts are taken one at a time, oldest first, under a lease (`AlertOutbox.take`),
posted in the shape of the chat the webhook URL belongs to, and marked delivered only after
the webhook accepted them. A refusal keeps the alert with its error and a next try after an
exponential backoff (2 s doubling to 10 minutes), never sooner than the chat's
Retry-After. When the chat itself is unavailable (429, 5xx, no answer) the pass stops
there: the others stay due for the next pass, so an outage costs one post a pass.

The one window for a double post: the process dies after the chat accepted an alert and
before it was marked delivered. The lease then runs out and the alert goes again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from xmas_pipeline.adapters.chat_webhook import (
    AlertError,
    chat_flavour,
    format_critical_alert,
    format_ops_alert,
    post_alert,
)
from xmas_pipeline.core.ports import Alert, AlertOutbox
from xmas_pipeline.core.signup import Signup

Poster = Callable[[str, dict[str, object]], None]

FIRST_RETRY = timedelta(seconds=2)
LONGEST_WAIT = timedelta(minutes=10)
# Longer than one post may take (a 5 s timeout): past it, an alert whose poster died is due.
LEASE = timedelta(minutes=2)


@dataclass
class AlertDeliveryReport:
    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    stopped: str = ""  # why the pass ended before the due alerts ran out

    def summary(self) -> str:
        said = f"{len(self.sent)} alert(s) posted"
        if self.failed:
            said += f", {len(self.failed)} kept for a later try ({self.failed[-1][1]})"
        return said


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait after the `attempts`-th failed post (1 for the first)."""
    wait = min(FIRST_RETRY * 2 ** max(0, attempts - 1), LONGEST_WAIT)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return wait


def alert_body(alert: Alert, url: str) -> dict[str, object]:
    """The alert as the chat behind `url` takes it."""
    if alert.kind == "critical":
        facts = alert.facts
        # The values were validated when the signup was; built as they were stored.
        signup = Signup.model_construct(**dict(facts.get("signup") or {}))
        return format_critical_alert(
            signup,
            str(facts.get("campaign") or ""),
            flavour=chat_flavour(url),
            contact_url=facts.get("contact_url") or None,
        )
    return format_ops_alert(alert.title, list(alert.lines))


def deliver_alerts(
    outbox: AlertOutbox,
    url: str,
    *,
    keys: Iterable[str] | None = None,
    post: Poster = post_alert,
    limit: int = 20,
    budget_s: float = 20.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AlertDeliveryReport:
    """Post the due alerts (or only these `keys`, when due), up to `limit`, within about
    `budget_s` seconds (a sensor tick has a minute)."""
    report = AlertDeliveryReport()
    wanted = None if keys is None else list(keys)
    started = time.monotonic()
    # One at a time: what is not taken stays due for whoever comes next.
    while len(report.sent) + len(report.failed) < limit:
        if time.monotonic() - started > budget_s:
            report.stopped = "out of time for this pass"
            break
        taken = outbox.take(now(), LEASE, 1, wanted)
        if not taken:
            break
        alert = taken[0]
        try:
            body = alert_body(alert, url)
        except (TypeError, ValueError, AttributeError) as exc:
            # A stored alert this release cannot shape: kept, with why, behind the others.
            why = f"cannot shape the alert: {type(exc).__name__}: {exc}"[:500]
            outbox.retry_later(alert, why, backoff(alert.attempts + 1))
            report.failed.append((alert.key, why))
            continue
        try:
            post(url, body)
        except AlertError as exc:
            wait = backoff(alert.attempts + 1, exc.retry_after)
            outbox.retry_later(alert, str(exc), wait)
            report.failed.append((alert.key, str(exc)))
            if exc.chat_unavailable:
                report.stopped = str(exc)
                break
            continue
        outbox.delivered(alert)
        report.sent.append(alert.key)
    return report
