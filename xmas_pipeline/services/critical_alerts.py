"""CRITICAL-signup alerts, once per contact, through the alert outbox.

The run that ingests a day's signups enqueues one alert per CRITICAL contact (its key is the
contact's, so a re-ingested day or a repeated signup adds nothing, and a contact an older
release announced counts as delivered), then tries those at once for a quick word in the
chat. Whatever the chat does not accept then stays in the outbox, which
`alert_outbox_sensor` posts with backoff until it does: no other signup has to arrive. The
alert takes the shape of the chat the webhook URL belongs to (a Discord embed, Slack
blocks, or plain JSON elsewhere) when it is posted, and links to the contact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xmas_pipeline.adapters.chat_webhook import mailto, post_alert
from xmas_pipeline.core.ports import Alert, AlertOutbox
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.services.alert_delivery import Poster, deliver_alerts


@dataclass
class CriticalBatch:
    contacts: list[str]  # the CRITICAL contacts of the events, each once
    new: set[str]  # the alert keys enqueued by this call


@dataclass
class AlertReport:
    sent: list[str] = field(default_factory=list)  # contact keys announced now
    already: list[str] = field(default_factory=list)  # enqueued or announced before
    waiting: list[tuple[str, str]] = field(default_factory=list)  # (contact key, why)


def critical_key(contact_key: str) -> str:
    return f"critical:{contact_key}"


def mailto_link(signup: Signup) -> str:
    """The default link to a contact: an email to them."""
    return mailto(str(signup.email))


def critical_alert(event: SignupEvent, campaign_name: str, contact_url: str) -> Alert:
    return Alert(
        key=critical_key(event.contact_key),
        kind="critical",
        title=f"CRITICAL signup: {event.contact_key}",
        facts={
            "signup": event.signup.model_dump(mode="json"),
            "campaign": campaign_name,
            "contact_url": contact_url,
        },
    )


def enqueue_critical_alerts(
    events: Iterable[SignupEvent],
    *,
    campaign_name: str,
    outbox: AlertOutbox,
    contact_url: Callable[[Signup], str] = mailto_link,
) -> CriticalBatch:
    """One alert per CRITICAL contact into the outbox (a contact already there is left as
    it is). `contact_url` gives the link to each contact (by default a mailto: link)."""
    alerts: dict[str, Alert] = {}
    for event in events:
        if event.signup.segment is Segment.CRITICAL and event.contact_key not in alerts:
            alerts[event.contact_key] = critical_alert(
                event, campaign_name, contact_url(event.signup)
            )
    new = outbox.enqueue(alerts.values())
    return CriticalBatch(contacts=list(alerts), new=set(new))


def post_critical_alerts(
    batch: CriticalBatch, *, url: str, outbox: AlertOutbox, post: Poster = post_alert
) -> AlertReport:
    """Post these contacts' alerts that are due now (an older one still waiting too)."""
    delivery = deliver_alerts(
        outbox, url, keys=[critical_key(k) for k in batch.contacts], post=post
    )
    posted = set(delivery.sent)
    failed = dict(delivery.failed)
    report = AlertReport()
    for key in batch.contacts:
        alert_key = critical_key(key)
        if alert_key in posted:
            report.sent.append(key)
        elif alert_key in batch.new:
            report.waiting.append((key, failed.get(alert_key, "left to the outbox")))
        else:
            report.already.append(key)
    return report


def send_critical_alerts(
    events: Iterable[SignupEvent],
    *,
    campaign_name: str,
    url: str,
    outbox: AlertOutbox,
    post: Poster = post_alert,
    contact_url: Callable[[Signup], str] = mailto_link,
) -> AlertReport:
    """Both steps at once: enqueue, then post."""
    batch = enqueue_critical_alerts(
        events, campaign_name=campaign_name, outbox=outbox, contact_url=contact_url
    )
    return post_critical_alerts(batch, url=url, outbox=outbox, post=post)
