"""The inbox days holding files for some campaigns: what a campaign that has just loaded
(its folder fixed, or added) may have waiting, and what retention must keep, since
ingestion keeps a signup or an email event for a campaign that is not loaded in the inbox
rather than drop it."""

from __future__ import annotations

from collections.abc import Callable, Collection

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.core.campaign_set import signup_campaign
from xmas_pipeline.core.email_events import parse_email_event

SIGNUPS, EMAIL_EVENTS = "signups", "email-events"


def _days_where(
    inbox: Inbox, chosen: Callable[[str], bool], default_slug: str, before: str | None
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {SIGNUPS: [], EMAIL_EVENTS: []}
    for day in inbox.days(SIGNUPS):
        if before is not None and day >= before:
            continue
        for item in inbox.files(SIGNUPS, day):
            if chosen(signup_campaign(inbox.request_of(item), default_slug)):
                found[SIGNUPS].append(day)
                break
    for day in inbox.days(EMAIL_EVENTS):
        if before is not None and day >= before:
            continue
        for item in inbox.files(EMAIL_EVENTS, day):
            try:
                event = parse_email_event(inbox.read(item), received_at=item.received_at)
            except ValueError:
                continue  # the ingestion's to report
            if event is not None and chosen(event.tags.get("campaign") or default_slug):
                found[EMAIL_EVENTS].append(day)
                break
    return found


def days_holding(inbox: Inbox, slugs: Collection[str], default_slug: str) -> dict[str, list[str]]:
    """Per inbox kind (signups, email events), the days with at least one file for one of
    `slugs`: a signup or confirmation click by the campaign its request details name, an
    email event by its email's `campaign` tag (none: the default campaign)."""
    wanted = set(slugs)
    return _days_where(inbox, lambda slug: slug in wanted, default_slug, None)


def days_waiting(
    inbox: Inbox, loaded: Collection[str], default_slug: str, before: str
) -> set[tuple[str, str]]:
    """(kind, day) of the days before `before` holding a file for a campaign that is not
    loaded: its ingestion kept it waiting, so the day must not be removed yet."""
    running = set(loaded)
    found = _days_where(inbox, lambda slug: slug not in running, default_slug, before)
    return {(kind, day) for kind, days in found.items() for day in days}
