"""When a campaign stops taking new signups (its optional `signups_close` date).

The rule, in one place: closing on date D means a signup received on D, in the campaign's
default time zone (`send_window.default_time_zone`), is still taken, and one received at
or after the midnight that ends D is not. The time is the inbox file's received time, so
a late ingestion run never closes a signup that arrived in time. A closed signup is kept
(its inbox file and consent details stay) but starts no sequence; a person enrolled
before the close is not refused: their later signup is the retake rule's, as before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime, time, timedelta

from xmas_pipeline.core.campaign import Campaign, SendWindow
from xmas_pipeline.core.signup import SignupEvent
from xmas_pipeline.core.zones import zone_info


def close_zone(campaign: Campaign) -> str:
    """The zone the close date is read in. The testing preset drops the send window, so
    it falls back to the window's default zone."""
    window = campaign.send_window or SendWindow()
    return window.default_time_zone


def closes_at(campaign: Campaign) -> datetime | None:
    """The first moment (UTC) signups are no longer taken, or None when they never close:
    the midnight that ends `signups_close` in the campaign's default zone."""
    if campaign.signups_close is None:
        return None
    day_after = campaign.signups_close + timedelta(days=1)
    local = datetime.combine(day_after, time(0, 0), tzinfo=zone_info(close_zone(campaign)))
    return local.astimezone(UTC)


def signups_open(campaign: Campaign, received_at: datetime) -> bool:
    """Whether a signup received at `received_at` (timezone-aware) is still taken."""
    end = closes_at(campaign)
    if end is None:
        return True
    if received_at.tzinfo is None:  # a naive time would compare wrongly; refuse it loudly
        raise ValueError("received_at must be timezone-aware")
    return received_at < end


def split_after_close(
    campaign: Campaign, events: Iterable[SignupEvent], enrolled: Collection[str]
) -> tuple[list[SignupEvent], list[SignupEvent]]:
    """The signups to ingest, and those turned away because the campaign had closed.

    A signup after the close is still ingested when its person is already enrolled
    (`enrolled`: contact keys with a sequence in the store) or signs up in time in the
    same batch: for them it is a retake (scores update), not a new enrolment.
    """
    events = list(events)
    in_time = [signups_open(campaign, e.received_at) for e in events]
    known = set(enrolled) | {e.contact_key for e, ok in zip(events, in_time, strict=True) if ok}
    taken: list[SignupEvent] = []
    closed: list[SignupEvent] = []
    for event, ok in zip(events, in_time, strict=True):
        (taken if ok or event.contact_key in known else closed).append(event)
    return taken, closed
