"""The reputation guard: after email events land, judge one campaign's bounce and
complaint rates over its own mail; at the warn line tell ops (once per episode), at the
pause line pause that campaign's sending with the reason, until a person resumes it. The
`sender_reputation` check runs it for every campaign (dagster_defs/reputation.py); the
episodes and alerts are kept in each campaign's own alert outbox, so one campaign's storm
neither pauses nor silences another.

An episode runs from the evaluation that first finds a rate over a line to the one that
finds every rate back within limits (with enough mail sent to tell), or to a resume:
each episode alerts once per level. A pause is never lifted here: only a person resumes
(`resume_sending`), and the window then starts again at the resume (core/reputation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from xmas_pipeline.adapters.sql.reputation import SqlReputation
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import AlertOutbox, SendSwitch
from xmas_pipeline.core.reputation import (
    Reputation,
    ReputationLimits,
    assess,
    count_window,
    window_start,
)
from xmas_pipeline.services.alert_delivery import deliver_alerts
from xmas_pipeline.services.ops_alerts import ops_alert

GUARD = "reputation guard"

# (outbox, key, title, lines) -> posted now. The alert goes into the alert outbox either
# way, so one the chat refuses now is posted later by alert_outbox_sensor.
Alerter = Callable[[AlertOutbox, str, str, list[str]], bool]


def outbox_alerter(url: str) -> Alerter:
    """Enqueue the alert, then try to post it at once (ops hear of a pause now)."""

    def alert(outbox: AlertOutbox, key: str, title: str, lines: list[str]) -> bool:
        outbox.enqueue([ops_alert(key, title, lines)])
        return key in deliver_alerts(outbox, url, keys=[key]).sent

    return alert


def _seen(outbox: AlertOutbox, key: str) -> bool:
    return key in outbox.known([key])


def _mark(outbox: AlertOutbox, key: str) -> None:
    outbox.enqueue([], noted=[key])


@dataclass
class GuardOutcome:
    reputation: Reputation
    paused_now: bool = False
    already_paused: bool = False
    alert_key: str = ""  # the episode's alert for this level ("" when none is due)
    alerted_now: bool = False


def measure(
    source: SqlReputation,
    switch: SendSwitch,
    campaign: Campaign,
    limits: ReputationLimits,
    now: datetime,
) -> tuple[Reputation, datetime | None]:
    """The rates, and when sending last resumed (None: never paused, or paused now)."""
    state = switch.state(campaign)
    # A resume (the switch's last change, sending) starts a fresh window.
    resumed = state.since if state.since is not None and not state.paused else None
    since = window_start(now, limits.window, resumed)
    counts = count_window(
        source.sent_since(campaign, since), source.bad_events_since(campaign, since), since, now
    )
    return assess(counts, limits), resumed


def _episode(ledger: AlertOutbox, era: str) -> str:
    """The current episode's name: the first of this era not yet marked closed."""
    number = 0
    while _seen(ledger, f"reputation:{era}:{number}:closed"):
        number += 1
    return f"{era}:{number}"


def guard(
    source: SqlReputation,
    switch: SendSwitch,
    ledger: AlertOutbox,
    campaign: Campaign,
    limits: ReputationLimits,
    now: datetime,
    alert: Alerter | None,
) -> GuardOutcome:
    """Measure, pause at the pause line, alert once per episode and level. The pause goes
    first: a failed alert (raised by `alert`) must not leave sending on."""
    reputation, resumed = measure(source, switch, campaign, limits, now)
    outcome = GuardOutcome(reputation)
    # Each resume starts an era of episodes: after one, a rate still over a line is news.
    era = resumed.isoformat(timespec="seconds") if resumed else "start"
    episode = _episode(ledger, era)
    opened = _seen(ledger, f"reputation:{episode}:open")
    if not reputation.alarming:
        if opened and reputation.level == "ok":
            _mark(ledger, f"reputation:{episode}:closed")
        return outcome
    if not opened:
        _mark(ledger, f"reputation:{episode}:open")
    state = switch.state(campaign)
    outcome.already_paused = state.paused
    if reputation.level == "pause" and not state.paused:
        switch.set(campaign, paused=True, reason=reputation.describe(), by=GUARD)
        outcome.paused_now = True
    # The key needs no campaign in it: each campaign's outbox is its own.
    outcome.alert_key = f"reputation:{episode}:{reputation.level}"
    if alert is not None:
        title = (
            f"Sending paused for {campaign.name}: the domain's reputation is at risk"
            if reputation.level == "pause"
            else f"Sender reputation warning: {campaign.name}"
        )
        lines = alert_lines(outcome, campaign)
        outcome.alerted_now = alert(ledger, outcome.alert_key, title, lines)
    return outcome


def alert_lines(outcome: GuardOutcome, campaign: Campaign) -> list[str]:
    reputation = outcome.reputation
    # The job names' prefix (dagster_defs/names.py): the slug with `-` as `_`.
    prefix = campaign.slug.replace("-", "_")
    lines = [f"Campaign: {campaign.name} ({campaign.slug})", reputation.describe()]
    if reputation.level == "pause":
        lines.append(
            f"Sending of this campaign is paused until a person resumes it "
            f"({prefix}__resume_sending); each other campaign is judged on its own mail. "
            "Find the cause "
            "first: the recipients that bounced or complained, a bad import, a template."
        )
    else:
        lines.append(
            "Its sending goes on; it pauses by itself at the pause line. See the email_events "
            "asset's sender_reputation check."
        )
    return lines
