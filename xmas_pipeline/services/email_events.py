"""Applying email events (Resend's webhooks, unsubscribes) to the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent, contact_flags
from xmas_pipeline.core.ports import BookingLedger


@dataclass
class AppliedEvents:
    new: int = 0
    repeats: int = 0
    flagged: list[dict[str, str]] = field(default_factory=list)  # {"contact", "flag"}


def apply_email_events(
    ledger: BookingLedger, campaign: Campaign, events: list[DeliveryEvent]
) -> AppliedEvents:
    """Flags first, then the event: a crash in between is healed by the next run (setting
    a flag twice changes nothing; an event recorded is never applied again)."""
    applied = AppliedEvents()
    for event in sorted(events, key=lambda e: (e.at, e.dedupe_key)):
        flags = contact_flags(event)
        if flags:
            ledger.set_contact_flags(campaign, event.contact_key, event.email, **flags)
        if not ledger.record_delivery_event(campaign, event):
            applied.repeats += 1
            continue
        applied.new += 1
        if flags:
            flag = "unsubscribed" if "unsubscribed" in flags else str(flags["delivery_state"])
            applied.flagged.append({"contact": event.contact_key, "flag": flag})
    return applied


def apply_suppressions(
    ledger: BookingLedger, home: Campaign, events: list[DeliveryEvent]
) -> list[dict[str, str]]:
    """The stop flags alone (unsubscribe, hard bounce, complaint) of events whose own
    campaign is not loaded, set on the contact in `home`: one suppression list spans the
    campaigns, so the address stops getting every other campaign's emails now. The events
    themselves wait (their files kept) to be recorded in their own campaign once it loads;
    setting a flag twice changes nothing."""
    flagged: list[dict[str, str]] = []
    for event in sorted(events, key=lambda e: (e.at, e.dedupe_key)):
        flags = contact_flags(event)
        if flags:
            ledger.set_contact_flags(home, event.contact_key, event.email, **flags)
            flag = "unsubscribed" if "unsubscribed" in flags else str(flags["delivery_state"])
            flagged.append({"contact": event.contact_key, "flag": flag})
    return flagged
