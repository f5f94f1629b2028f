"""The `sender_reputation` check on `email_events`: the reputation guard, run right after
a day's email events are applied (services/reputation_guard.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from xmas_pipeline.adapters.chat_webhook import AlertError
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import AlertOutbox
from xmas_pipeline.core.reputation import ReputationLimits, pct
from xmas_pipeline.dagster_defs.resources import AlertResource, StateStoreResource
from xmas_pipeline.services.reputation_guard import (
    Alerter,
    GuardOutcome,
    guard,
    outbox_alerter,
)

CHECK = "sender_reputation"


def reputation_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHECK,
        asset=asset,
        description=(
            "Bounce and complaint rates of the emails sent in the guard's window: red at "
            "the warn line (ops are told once), and at the pause line sending pauses until "
            "a person resumes it."
        ),
    )


def _metadata(outcome: GuardOutcome, alert_note: str) -> dict[str, Any]:
    rep = outcome.reputation
    counts, limits = rep.counts, rep.limits
    return {
        "level": rep.level,
        "bounce rate": pct(counts.bounce_rate),
        "complaint rate": pct(counts.complaint_rate),
        "sent": counts.sent,
        "hard bounces": counts.bounced,
        "complaints": counts.complained,
        "window since": counts.since.isoformat(timespec="seconds"),
        "window days": limits.window.total_seconds() / 86400,
        "minimum sent": limits.min_sent,
        "bounce warn / pause": f"{pct(limits.warn_bounce)} / {pct(limits.pause_bounce)}",
        "complaint warn / pause": (f"{pct(limits.warn_complaint)} / {pct(limits.pause_complaint)}"),
        "paused now": outcome.paused_now,
        "alert": alert_note,
    }


def evaluate_reputation(
    context: dg.AssetExecutionContext,
    store: StateStoreResource,
    alerts: AlertResource,
    campaign: Campaign,
    limits: ReputationLimits,
    asset: str,
) -> dg.AssetCheckResult:
    failures: list[str] = []
    alert: Alerter | None = None
    if alerts.webhook_url:
        post = outbox_alerter(alerts.webhook_url)

        def alert(ledger: AlertOutbox, key: str, title: str, lines: list[str]) -> bool:
            # Not delivered now: the alert waits in the outbox for alert_outbox_sensor;
            # the pause (when due) was made before.
            try:
                return post(ledger, key, title, lines)
            except AlertError as exc:
                failures.append(str(exc))
                return False

    outcome = guard(
        store.reputation(),
        store.send_switch(),
        store.alert_outbox(campaign),
        campaign,
        limits,
        datetime.now(UTC),
        alert,
    )
    rep = outcome.reputation
    if failures:
        context.log.warning(f"sender reputation alert not delivered: {failures[0]}")
        note = f"not delivered: {failures[0]}"
    elif not outcome.alert_key:
        note = "none needed"
    elif alert is None:
        note = "no XMAS_ALERT_WEBHOOK_URL: nobody told"
    else:
        note = "posted" if outcome.alerted_now else "posted earlier in this episode"
    if outcome.paused_now:
        context.log.warning(f"sending paused by the reputation guard: {rep.describe()}")
    return dg.AssetCheckResult(
        check_name=CHECK,
        asset_key=asset,
        passed=not rep.alarming,
        severity=dg.AssetCheckSeverity.ERROR,
        description=rep.describe(),
        metadata=_metadata(outcome, note),
    )
