"""Render a shipped template for a segment's sample contact: what a marketer sees before a send.

Used by `xmas-pipeline preview` and by materialization metadata. Reminder templates get a
sample meeting three days ahead at 10:00 AM in America/Toronto.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.context import nurture_context, reminder_context
from xmas_pipeline.core.render import (
    Renderer,
    TemplateSource,
    load_template_dir,
    segment_sample,
)
from xmas_pipeline.core.segments import ALL_SEGMENTS, Segment
from xmas_pipeline.core.state import SIGNUP_FIELDS

FORMATS: tuple[str, ...] = ("html", "text", "subject")
SAMPLE_TIME_ZONE = "America/Toronto"
SAMPLE_MEETING_URL = "https://app.cal.com/video/sample-booking"
SAMPLE_BOOKING_UID = "sample-booking"
SAMPLE_UNSUBSCRIBE_URL = "https://example.com/unsubscribe?token=preview"
# Besides the signup fields, a preview may override these presentation-only values.
EXTRA_OVERRIDES: tuple[str, ...] = ("unsubscribe_url", "time_zone", "meeting_url")


def template_bases(templates: Mapping[str, TemplateSource]) -> list[str]:
    """Base names (`email-2`, `reminder-1`) of the given templates, variants folded in."""
    return sorted({name.split(".", 1)[0] for name in templates})


def is_reminder(base: str) -> bool:
    return base.startswith("reminder-")


def sample_meeting_start(now: datetime, time_zone: str = SAMPLE_TIME_ZONE) -> datetime:
    """10:00 AM local time, three days after `now`'s local date: a believable meeting."""
    zone = ZoneInfo(time_zone)
    day = now.astimezone(zone).date() + timedelta(days=3)
    return datetime.combine(day, time(10, 0), tzinfo=zone)


def _segment(segment: str) -> Segment:
    try:
        return Segment(segment.strip().upper())
    except ValueError:
        valid = ", ".join(s.value for s in ALL_SEGMENTS)
        raise ValueError(f"unknown segment {segment!r}; expected one of {valid}") from None


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    allowed = (*SIGNUP_FIELDS, *EXTRA_OVERRIDES)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def render_preview(
    template: str,
    segment: str,
    *,
    campaign: Campaign | None = None,
    overrides: dict[str, Any] | None = None,
    fmt: str = "html",
    templates: Mapping[str, TemplateSource] | None = None,
    now: datetime | None = None,
) -> str:
    """The template's HTML body, plain-text part or subject for the segment's sample contact.

    `templates` defaults to the shipped folder; `now` (default: the current time) only
    places the sample meeting of reminder templates.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    seg = _segment(segment)
    source = dict(templates) if templates is not None else load_template_dir()
    bases = template_bases(source)
    if template not in bases:
        raise ValueError(f"unknown template {template!r}; available: {', '.join(bases)}")
    extra = dict(overrides or {})
    _check_overrides(extra)
    campaign = campaign or load_campaign()

    fields: dict[str, Any] = segment_sample(seg)
    fields.update({k: v for k, v in extra.items() if k in SIGNUP_FIELDS})
    # The preview is for this segment, whatever the overridden counts would classify as.
    fields["segment"] = seg.value
    unsubscribe_url = str(extra.get("unsubscribe_url", SAMPLE_UNSUBSCRIBE_URL))

    if is_reminder(template):
        time_zone = str(extra.get("time_zone", SAMPLE_TIME_ZONE))
        context = reminder_context(
            fields,
            campaign,
            start=sample_meeting_start(now or datetime.now(ZoneInfo("UTC"))),
            time_zone=time_zone,
            meeting_url=str(extra.get("meeting_url", SAMPLE_MEETING_URL)),
            booking_uid=SAMPLE_BOOKING_UID,
            unsubscribe_url=unsubscribe_url,
        )
    else:
        context = nurture_context(fields, campaign, unsubscribe_url)

    # A template that cannot render raises TemplateError, itself a ValueError.
    rendered = Renderer(source).render(template, seg.value, context)
    if fmt == "subject":
        return rendered.subject
    return rendered.html if fmt == "html" else rendered.text
