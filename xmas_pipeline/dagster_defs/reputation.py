"""The `sender_reputation` check on `email_events`: the reputation guard, run right after
a day's email events are applied (services/reputation_guard.py), for every running
campaign on its own mail, its own switch and its own alert outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from xmas_pipeline.adapters.chat_webhook import AlertError
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import AlertOutbox
from xmas_pipeline.core.reputation import ReputationLimits, pct
from xmas_pipeline.dagster_defs.metadata import md_table
from xmas_pipeline.dagster_defs.resources import AlertResource, StateStoreResource
from xmas_pipeline.services.reputation_guard import (
    Alerter,
    GuardOutcome,
    guard,
    outbox_alerter,
)

CHECK = "sender_reputation"
_RANK = {"too_few": 0, "ok": 0, "warn": 1, "pause": 2}


def reputation_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        CHECK,
        asset=asset,
        description=(
            "Each campaign's bounce and complaint rates over the emails it sent in the "
            "guard's window: red while any campaign is at the warn line (ops are told once), "
            "and at the pause line that campaign's sending pauses until a person resumes it."
        ),
    )


@dataclass
class CampaignVerdict:
    """One campaign's judgement: the guard's outcome and what became of its alert."""

    campaign: Campaign
    outcome: GuardOutcome
    alert_note: str


def _metadata(verdict: CampaignVerdict) -> dict[str, Any]:
    rep = verdict.outcome.reputation
    counts, limits = rep.counts, rep.limits
    return {
        "campaign": verdict.campaign.slug,
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
        "paused now": verdict.outcome.paused_now,
        "alert": verdict.alert_note,
    }


def _row(verdict: CampaignVerdict) -> dict[str, Any]:
    outcome = verdict.outcome
    counts = outcome.reputation.counts
    if outcome.paused_now:
        paused = "paused now"
    elif outcome.already_paused:
        paused = "already paused"
    else:
        paused = "no"
    return {
        "campaign": verdict.campaign.slug,
        "level": outcome.reputation.level,
        "bounce rate": pct(counts.bounce_rate),
        "complaint rate": pct(counts.complaint_rate),
        "sent": counts.sent,
        "hard bounces": counts.bounced,
        "complaints": counts.complained,
        "paused": paused,
        "alert": verdict.alert_note,
    }


def worst(verdicts: list[CampaignVerdict], default_slug: str) -> CampaignVerdict:
    """The campaign the top-level metadata describes: the highest level, the default
    campaign first among equals, then folder order."""
    ranked = sorted(
        enumerate(verdicts),
        key=lambda item: (
            -_RANK[item[1].outcome.reputation.level],
            item[1].campaign.slug != default_slug,
            item[0],
        ),
    )
    return ranked[0][1]


def describe(verdicts: list[CampaignVerdict]) -> str:
    """The check's description: the alarming campaigns, or every campaign within limits."""
    if len(verdicts) == 1:
        return verdicts[0].outcome.reputation.describe()
    alarming = [v for v in verdicts if v.outcome.reputation.alarming]
    shown = alarming or verdicts
    said = "; ".join(f"{v.campaign.slug}: {v.outcome.reputation.describe()}" for v in shown)
    if not alarming:
        return f"Every campaign within limits. {said}"
    names = ", ".join(v.campaign.slug for v in alarming)
    return f"Alarming: {names}. {said}"


def _judge(
    context: dg.AssetExecutionContext,
    store: StateStoreResource,
    alerts: AlertResource,
    campaign: Campaign,
    limits: ReputationLimits,
    now: datetime,
) -> CampaignVerdict:
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
        now,
        alert,
    )
    rep = outcome.reputation
    if failures:
        context.log.warning(
            f"{campaign.slug}: sender reputation alert not delivered: {failures[0]}"
        )
        note = f"not delivered: {failures[0]}"
    elif not outcome.alert_key:
        note = "none needed"
    elif alert is None:
        note = "no XMAS_ALERT_WEBHOOK_URL: nobody told"
    else:
        note = "posted" if outcome.alerted_now else "posted earlier in this episode"
    if outcome.paused_now:
        context.log.warning(
            f"sending of {campaign.slug} paused by the reputation guard: {rep.describe()}"
        )
    return CampaignVerdict(campaign, outcome, note)


def evaluate_reputation(
    context: dg.AssetExecutionContext,
    store: StateStoreResource,
    alerts: AlertResource,
    campaigns: Mapping[str, Campaign],
    default_slug: str,
    limits: ReputationLimits,
    asset: str,
) -> dg.AssetCheckResult:
    """The guard for every running campaign, each on its own mail, switch and outbox; one
    check result: red while any campaign is at a line. The top-level metadata is the worst
    campaign's (the default's when none is worse); `campaigns` has each one's row."""
    now = datetime.now(UTC)
    verdicts = [_judge(context, store, alerts, c, limits, now) for c in campaigns.values()]
    if not verdicts:
        return dg.AssetCheckResult(
            check_name=CHECK,
            asset_key=asset,
            passed=True,
            description="No campaign is running: nothing to judge.",
        )
    shown = worst(verdicts, default_slug)
    columns = ["campaign", "level", "bounce rate", "complaint rate", "sent"]
    columns += ["hard bounces", "complaints", "paused", "alert"]
    return dg.AssetCheckResult(
        check_name=CHECK,
        asset_key=asset,
        passed=not any(v.outcome.reputation.alarming for v in verdicts),
        severity=dg.AssetCheckSeverity.ERROR,
        description=describe(verdicts),
        metadata={
            **_metadata(shown),
            "alarming": ", ".join(
                v.campaign.slug for v in verdicts if v.outcome.reputation.alarming
            )
            or "none",
            "campaigns": md_table([_row(v) for v in verdicts], columns),
        },
    )
