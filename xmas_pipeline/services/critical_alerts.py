"""CRITICAL-signup alerts, once per signup: the ledger remembers who was announced.

An alert is marked in the ledger only after the webhook accepted it, so a failed alert is
tried again the next time that day's signups are ingested, and a re-ingested day announces
nobody twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xmas_pipeline.adapters.chat_webhook import AlertError, format_critical_alert, post_alert
from xmas_pipeline.core.ports import AlertLedger
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.signup import SignupEvent


@dataclass
class AlertReport:
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (contact key, reason)


def critical_key(contact_key: str) -> str:
    return f"critical:{contact_key}"


def send_critical_alerts(
    events: Iterable[SignupEvent],
    *,
    campaign_name: str,
    url: str,
    ledger: AlertLedger,
    post: Callable[[str, dict[str, object]], None] = post_alert,
) -> AlertReport:
    report = AlertReport()
    for event in events:
        if event.signup.segment is not Segment.CRITICAL:
            continue
        key = event.contact_key
        if ledger.seen(critical_key(key)) or key in report.sent:
            report.already.append(key)
            continue
        try:
            post(url, format_critical_alert(event.signup, campaign_name))
        except AlertError as exc:
            report.failed.append((key, str(exc)))
            continue
        ledger.mark(critical_key(key))
        report.sent.append(key)
    return report
