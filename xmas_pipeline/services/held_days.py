"""The inbox days holding files for some campaigns: what a campaign that has just loaded
(its folder fixed, or added) may have waiting, since ingestion keeps a signup or an email
event for a campaign that is not loaded in the inbox rather than drop it."""

from __future__ import annotations

from collections.abc import Collection

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.core.campaign_set import signup_campaign
from xmas_pipeline.core.email_events import parse_email_event

SIGNUPS, EMAIL_EVENTS = "signups", "email-events"


def days_holding(inbox: Inbox, slugs: Collection[str], default_slug: str) -> dict[str, list[str]]:
    """Per inbox kind (signups, email events), the days with at least one file for one of
    `slugs`: a signup or confirmation click by the campaign its request details name, an
    email event by its email's `campaign` tag (none: the default campaign). A file that
    does not parse is the ingestion's to report, not this scan's."""
    wanted = set(slugs)
    found: dict[str, list[str]] = {SIGNUPS: [], EMAIL_EVENTS: []}
    for day in inbox.days(SIGNUPS):
        for item in inbox.files(SIGNUPS, day):
            if signup_campaign(inbox.request_of(item), default_slug) in wanted:
                found[SIGNUPS].append(day)
                break
    for day in inbox.days(EMAIL_EVENTS):
        for item in inbox.files(EMAIL_EVENTS, day):
            try:
                event = parse_email_event(inbox.read(item), received_at=item.received_at)
            except ValueError:
                continue
            if event is not None and (event.tags.get("campaign") or default_slug) in wanted:
                found[EMAIL_EVENTS].append(day)
                break
    return found
