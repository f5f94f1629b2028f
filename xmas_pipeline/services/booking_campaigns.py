"""Putting each booking under the one campaign it belongs to (`core.booking_campaign`),
before ingestion stores it: the campaigns already holding these bookings and the people's
signups across campaigns are read once for the whole batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xmas_pipeline.core.booking_campaign import assign_campaigns, signups_by_contact
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import StateStore


def assign_booking_campaigns(
    events: Iterable[BookingEvent],
    store: StateStore,
    campaigns: Mapping[str, Campaign],
    default: str,
) -> dict[str, list[BookingEvent]]:
    """The batch's booking events by campaign slug (each a key of `campaigns`), each
    campaign's in the order given; every event is in exactly one list. `default`: the
    slug of the campaign a booker who never signed up belongs to. Then each list goes to
    `store.upsert_booking_events(campaigns[slug], events)`."""
    if default not in campaigns:
        raise ValueError(f"the default campaign {default!r} is not among the running campaigns")
    batch = list(events)
    if not batch:
        return {}
    uids = {u for e in batch for u in (e.uid, e.previous_uid, e.rescheduled_to) if u}
    keys = {e.contact_key for e in batch if e.contact_key}
    return assign_campaigns(
        batch,
        known=store.booking_campaigns(uids),
        signups=signups_by_contact(store.signups_across_campaigns(keys)) if keys else {},
        campaigns=set(campaigns),
        default=default,
    )
