"""The sample contact every preview is written for: `xmas-pipeline preview`, the templates
asset and its render check all use these, so what the UI shows is what the CLI prints.

One believable person per segment; reminder templates also get a meeting three days
after today, 10:00 AM in America/Toronto.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import confirm_context, nurture_context, reminder_context
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.core.sequence_frame import SIGNUP_FIELDS
from xmas_pipeline.core.zones import zone_info

SAMPLE_TIME_ZONE = "America/Toronto"
SAMPLE_MEETING_URL = "https://app.cal.com/video/sample-booking"
SAMPLE_BOOKING_UID = "sample-booking"
SAMPLE_UNSUBSCRIBE_URL = "https://example.com/unsubscribe?token=preview"
SAMPLE_CONFIRM_URL = "https://example.com/confirm?token=preview"
SAMPLE_POSTAL_ADDRESS = "BusOS, 100 Sample Street, Toronto ON M5V 2T6, Canada"
# Besides the signup fields, a preview may override these presentation-only values.
EXTRA_OVERRIDES: tuple[str, ...] = ("unsubscribe_url", "postal_address", "time_zone", "meeting_url")

_COUNTS = {
    Segment.CRITICAL: (3, 2, 2, 1),
    Segment.URGENT: (1, 2, 3, 2),
    Segment.OPTIMIZE: (0, 1, 3, 4),
}


def segment_sample(segment: Segment | str) -> dict[str, Any]:
    """The sample contact's signup fields for one segment."""
    fields: dict[str, Any] = {
        "email": "sample@example.com",
        "first_name": "Jamie",
        "business_name": "Northern Lights Bakery",
        "assessment_score": 48,
        "gps_score": 55,
        "money_score": 40,
        "weakest_system_1": "Bookings",
        "weakest_system_2": "Follow-up",
        "revenue_leak_total": 4200,
    }
    names = ("red_systems", "orange_systems", "yellow_systems", "green_systems")
    fields.update(zip(names, _COUNTS[Segment(segment)], strict=True))
    return fields


def is_reminder(base: str) -> bool:
    return base.startswith("reminder-")


def sample_meeting_start(now: datetime, time_zone: str = SAMPLE_TIME_ZONE) -> datetime:
    """10:00 AM local time, three days after `now`'s local date: a believable meeting."""
    zone = zone_info(time_zone)
    day = now.astimezone(zone).date() + timedelta(days=3)
    return datetime.combine(day, time(10, 0), tzinfo=zone)


def check_overrides(overrides: Mapping[str, Any]) -> None:
    allowed = (*SIGNUP_FIELDS, *EXTRA_OVERRIDES)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def sample_context(
    base: str,
    segment: Segment,
    campaign: Campaign,
    now: datetime,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables `base` (a nurture or a reminder template) gets for the sample
    contact of `segment`, as the send path would build them."""
    extra = dict(overrides or {})
    check_overrides(extra)
    fields = {**segment_sample(segment), **{k: v for k, v in extra.items() if k in SIGNUP_FIELDS}}
    # The sample is for this segment, whatever overridden counts would classify as.
    fields["segment"] = segment.value
    unsubscribe_url = str(extra.get("unsubscribe_url", SAMPLE_UNSUBSCRIBE_URL))
    postal_address = str(extra.get("postal_address", SAMPLE_POSTAL_ADDRESS))
    if base == campaign.confirm_template:
        confirm_url = SAMPLE_CONFIRM_URL
        return confirm_context(fields, campaign, confirm_url, unsubscribe_url, postal_address)
    if not is_reminder(base):
        return nurture_context(fields, campaign, unsubscribe_url, postal_address)
    return reminder_context(
        fields,
        campaign,
        start=sample_meeting_start(now),
        time_zone=str(extra.get("time_zone", SAMPLE_TIME_ZONE)),
        meeting_url=str(extra.get("meeting_url", SAMPLE_MEETING_URL)),
        booking_uid=SAMPLE_BOOKING_UID,
        unsubscribe_url=unsubscribe_url,
        postal_address=postal_address,
    )
