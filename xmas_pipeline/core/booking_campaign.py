"""Which campaign a booking belongs to: one booked call, one set of reminders.

A person may be in several campaigns, and every campaign's emails link to the same
booking page. A booking is kept, folded and reminded under exactly one campaign, chosen
by the first of these that names a running campaign (`booking_campaign`):

1. the campaign its booking is already kept under: a cancellation or a reschedule follows
   the booking it changes (`uid`, the rescheduled-from uid, the rescheduled-to uid);
2. the campaign its booking link named: our emails link to the booking page with
   ``?metadata[campaign]=<slug>`` (`campaign_booking_url`), which Cal.com hands back as
   the booking's ``metadata.campaign`` (`core.bookings.BookingEvent.campaign`);
3. the person's latest signup among the running campaigns (a link without the tag: the
   booking page shared by hand, an old email);
4. the default campaign (a booker who never signed up).

A campaign named by a link or a signup that is not running (not given) is passed over,
never an error: the booking is still kept. The booked flag itself spans campaigns
(`core.suppression`): each campaign whose file says `exit.stop_nurture_on_booking` stops
its nurture, whichever campaign holds the booking.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign

# The booking-page query parameter Cal.com keeps as the booking's `metadata.campaign`.
CAMPAIGN_PARAMETER = "metadata[campaign]"


def campaign_booking_url(campaign: Campaign) -> str:
    """The campaign's booking page, tagged with the campaign (`CAMPAIGN_PARAMETER`); any
    query the campaign file's URL has is kept, a tag already there is replaced."""
    parts = urlsplit(campaign.booking_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k != CAMPAIGN_PARAMETER]
    query.append((CAMPAIGN_PARAMETER, campaign.slug))
    return urlunsplit(parts._replace(query=urlencode(query)))


def booking_campaign(
    event: BookingEvent,
    *,
    known: Mapping[str, str],
    signups: Mapping[str, datetime],
    campaigns: Collection[str],
    default: str,
) -> str:
    """The slug of the campaign `event` belongs to (see the module docstring).

    `known`: booking uid -> the campaign it is kept under; `signups`: the person's signup
    time per campaign; `campaigns`: the running campaigns' slugs; `default`: one of them."""
    for uid in (event.uid, event.previous_uid, event.rescheduled_to):
        if uid and known.get(uid) in campaigns:
            return known[uid]
    if event.campaign in campaigns:
        return event.campaign
    running = {slug: at for slug, at in signups.items() if slug in campaigns}
    if running:
        # The latest signup; two at the same moment: the later slug, so the choice is stable.
        return max(running, key=lambda slug: (pd.Timestamp(running[slug]), slug))
    return default


def assign_campaigns(
    events: Iterable[BookingEvent],
    *,
    known: Mapping[str, str],
    signups: Mapping[str, Mapping[str, datetime]],
    campaigns: Collection[str],
    default: str,
) -> dict[str, list[BookingEvent]]:
    """A batch of booking events by campaign slug, each in the order given.

    `signups`: contact key -> {campaign slug: signup time}. Events are judged in the
    order Cal.com made them, and a booking placed by one decides for the later ones of
    the same batch (a booking and its cancellation arriving together stay together)."""
    if default not in campaigns:
        raise ValueError(f"the default campaign {default!r} is not among the running campaigns")
    batch = list(events)
    placed = dict(known)
    chosen: dict[int, str] = {}
    order = sorted(range(len(batch)), key=lambda i: (batch[i].event_at, i))
    for i in order:
        event = batch[i]
        slug = booking_campaign(
            event,
            known=placed,
            signups=signups.get(event.contact_key, {}),
            campaigns=campaigns,
            default=default,
        )
        chosen[i] = slug
        for uid in (event.uid, event.previous_uid, event.rescheduled_to):
            if uid:
                placed.setdefault(uid, slug)
    out: dict[str, list[BookingEvent]] = {}
    for i, event in enumerate(batch):
        out.setdefault(chosen[i], []).append(event)
    return out


def signups_by_contact(frame: pd.DataFrame) -> dict[str, dict[str, datetime]]:
    """A signups frame (contact_key, campaign, signup_at) as contact -> {campaign: time}."""
    out: dict[str, dict[str, datetime]] = {}
    if frame.empty:
        return out
    columns = (frame["contact_key"], frame["campaign"], frame["signup_at"])
    for key, slug, at in zip(*columns, strict=True):
        out.setdefault(str(key), {})[str(slug)] = pd.Timestamp(at).to_pydatetime()
    return out
