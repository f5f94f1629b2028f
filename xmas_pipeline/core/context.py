"""The variables a template can use. Every name here is documented in the README."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from xmas_pipeline.core.booking_campaign import campaign_booking_url
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.segments import classify
from xmas_pipeline.core.sequence_frame import NUMBER_FIELDS, SIGNUP_FIELDS
from xmas_pipeline.core.zones import UTC_NAME, known_zone, zone_info


def nurture_context(
    fields: Mapping[str, Any],
    campaign: Campaign,
    unsubscribe_url: str = "",
    postal_address: str = "",
) -> dict[str, Any]:
    """Every signup field plus the derived values the emails talk about.

    `revenue_leak_total` is the monthly leak the assessment computes; `annual_leak` is
    twelve times that, `leak_k` / `annual_leak_k` the same in thousands (rounded).
    """
    ctx: dict[str, Any] = {}
    for name in SIGNUP_FIELDS:
        value = fields.get(name)
        if name in NUMBER_FIELDS:
            ctx[name] = int(value or 0)
        else:
            ctx[name] = "" if value is None else str(value)
    # The assessment may report a negative leak (a gain): stored as given, shown as none.
    leak = max(0, ctx["revenue_leak_total"])
    ctx["revenue_leak_total"] = leak
    segment = str(fields.get("segment") or classify(ctx["red_systems"], ctx["orange_systems"]))
    ctx.update(
        segment=segment,
        name=ctx["first_name"] or "there",
        business=ctx["business_name"] or "your business",
        weakest_system=ctx["weakest_system_1"] or "your weakest system",
        second_weakest_system=ctx["weakest_system_2"] or "your next-weakest system",
        annual_leak=leak * 12,
        leak_k=round(leak / 1000),
        annual_leak_k=round(leak * 12 / 1000),
        campaign_name=campaign.name,
        sender_name=campaign.sender_name,
        # Tagged with the campaign: a booking made through it belongs to this campaign.
        booking_url=campaign_booking_url(campaign),
        unsubscribe_url=unsubscribe_url,
        postal_address=postal_address,
    )
    return ctx


def meeting_times(start: datetime, time_zone: str) -> dict[str, str]:
    """The meeting's start, written for the attendee's own time zone (UTC when the zone
    is not a known IANA name, whatever a stored row holds)."""
    time_zone = known_zone(time_zone) or UTC_NAME
    local = start.astimezone(zone_info(time_zone))
    hour = local.strftime("%I").lstrip("0")
    time_text = f"{hour}:{local:%M} {local:%p}"
    date_text = f"{local:%A}, {local:%B} {local.day}, {local.year}"
    return {
        "meeting_date": date_text,
        "meeting_time": time_text,
        "meeting_start": f"{date_text} at {time_text} ({time_zone})",
        "time_zone": time_zone,
    }


def reminder_context(
    contact: Mapping[str, Any],
    campaign: Campaign,
    *,
    start: datetime,
    time_zone: str,
    meeting_url: str,
    booking_uid: str,
    unsubscribe_url: str = "",
    postal_address: str = "",
) -> dict[str, Any]:
    """Nurture variables (from the signup when there was one) plus the meeting's details."""
    ctx = nurture_context(contact, campaign, unsubscribe_url, postal_address)
    ctx.update(meeting_times(start, time_zone))
    ctx.update(meeting_url=meeting_url or ctx["booking_url"], booking_uid=booking_uid)
    return ctx


def reminder_contact_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The contact fields a reminder's context starts from: the signup's when the booker
    signed up (merged onto the plan row), else the first name Cal.com gave."""
    fields = {key: value for key, value in row.items() if not _missing(value)}
    if not str(fields.get("first_name") or "").strip():
        name = str(row.get("name") or "").strip()
        fields["first_name"] = name.split()[0] if name else ""
    return fields


def confirm_context(
    fields: Mapping[str, Any],
    campaign: Campaign,
    confirm_url: str,
    unsubscribe_url: str = "",
    postal_address: str = "",
) -> dict[str, Any]:
    """The double opt-in confirmation email's variables. No name or business: anyone can
    post any address, so nothing the poster typed goes to the address before its owner
    confirmed. `confirm_purpose` is `signup` (start the emails) or `change` (use a new
    name or business name)."""
    subject = str(fields.get("confirm_subject") or "signup:")
    return {
        "email": str(fields.get("email") or ""),
        "confirm_url": confirm_url,
        "confirm_purpose": "change" if subject.startswith("change:") else "signup",
        "confirm_days": max(1, round(campaign.confirm_ttl.total_seconds() / 86400)),
        "campaign_name": campaign.name,
        "sender_name": campaign.sender_name,
        "unsubscribe_url": unsubscribe_url,
        "postal_address": postal_address,
    }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def message_context(
    row: Mapping[str, Any],
    campaign: Campaign,
    unsubscribe_url: str = "",
    postal_address: str = "",
    confirm_url: str = "",
) -> dict[str, Any]:
    """The template variables for one send-plan row: nurture, reminder or confirmation."""
    if row.get("kind") == "confirm":
        if not confirm_url:
            raise ValueError("the confirmation email has no confirmation link")
        return confirm_context(row, campaign, confirm_url, unsubscribe_url, postal_address)
    if row.get("kind") != "reminder":
        return nurture_context(row, campaign, unsubscribe_url, postal_address)
    start = pd.Timestamp(row["meeting_start"])
    if pd.isna(start):
        raise ValueError("the reminder has no meeting time")
    return reminder_context(
        reminder_contact_fields(row),
        campaign,
        start=start.to_pydatetime(),
        time_zone=str(row.get("time_zone") or "UTC"),
        meeting_url=str(row.get("meeting_url") or ""),
        booking_uid=str(row["booking_uid"]),
        unsubscribe_url=unsubscribe_url,
        postal_address=postal_address,
    )
