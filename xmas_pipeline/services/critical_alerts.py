"""CRITICAL-signup alerts, once per signup: the ledger remembers who was announced.

An alert is marked in the ledger only after the webhook accepted it, so a failed alert is
tried again the next time that day's signups are ingested, and a re-ingested day announces
nobody twice. The alert takes the shape of the chat the webhook URL belongs to (a Discord
embed, Slack blocks, or plain JSON elsewhere), and links to the contact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xmas_pipeline.adapters.chat_webhook import (
    AlertError,
    chat_flavour,
    format_critical_alert,
    mailto,
    post_alert,
)
from xmas_pipeline.core.ports import AlertLedger
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.signup import Signup, SignupEvent


@dataclass
class AlertReport:
    sent: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (contact key, reason)


def critical_key(contact_key: str) -> str:
    return f"critical:{contact_key}"


def mailto_link(signup: Signup) -> str:
    """The default link to a contact: an email to them."""
    return mailto(str(signup.email))


def send_critical_alerts(
    events: Iterable[SignupEvent],
    *,
    campaign_name: str,
    url: str,
    ledger: AlertLedger,
    post: Callable[[str, dict[str, object]], None] = post_alert,
    contact_url: Callable[[Signup], str] = mailto_link,
) -> AlertReport:
    """Post one alert per CRITICAL signup not announced yet. `contact_url` gives the link
    to each contact (by default a mailto: link for the address)."""
    report = AlertReport()
    flavour = chat_flavour(url)
    for event in events:
        if event.signup.segment is not Segment.CRITICAL:
            continue
        key = event.contact_key
        if ledger.seen(critical_key(key)) or key in report.sent:
            report.already.append(key)
            continue
        body = format_critical_alert(
            event.signup, campaign_name, flavour=flavour, contact_url=contact_url(event.signup)
        )
        try:
            post(url, body)
        except AlertError as exc:
            report.failed.append((key, str(exc)))
            continue
        ledger.mark(critical_key(key))
        report.sent.append(key)
    return report
