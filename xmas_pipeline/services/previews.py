"""Render a template for a segment's sample contact (`core.samples`): what a marketer sees
before a send. Used by `xmas-pipeline preview` and by the templates asset."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.render import Renderer, TemplateError, TemplateSource, load_template_dir
from xmas_pipeline.core.samples import sample_context
from xmas_pipeline.core.segments import ALL_SEGMENTS, Segment
from xmas_pipeline.services.rendering import RenderJob, render_supervised

FORMATS: tuple[str, ...] = ("html", "text", "subject")


def template_bases(templates: Mapping[str, TemplateSource]) -> list[str]:
    """Base names (`email-2`, `reminder-1`) of the given templates, variants folded in."""
    return sorted({name.split(".", 1)[0] for name in templates})


def parse_segment(segment: str) -> Segment:
    try:
        return Segment(segment.strip().upper())
    except ValueError:
        valid = ", ".join(s.value for s in ALL_SEGMENTS)
        raise ValueError(f"unknown segment {segment!r}; expected one of {valid}") from None


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

    `templates` defaults to the campaign's own folder (`Campaign.templates_dir`); `now`
    (default: the current time) only places the sample meeting of reminder templates.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    seg = parse_segment(segment)
    campaign = campaign or load_campaign()
    source = dict(templates) if templates is not None else load_template_dir(campaign.templates_dir)
    bases = template_bases(source)
    if template not in bases:
        raise ValueError(f"unknown template {template!r}; available: {', '.join(bases)}")
    context = sample_context(template, seg, campaign, now or datetime.now(UTC), overrides)
    # Rendered in a watched child: a runaway template cannot hang the command. One that
    # cannot render raises TemplateError, itself a ValueError.
    [rendered] = render_supervised(
        Renderer(source), [RenderJob(template, seg.value, context)], allowed_hosts=None
    )
    if isinstance(rendered, TemplateError):
        raise rendered
    if fmt == "subject":
        return rendered.subject
    return rendered.html if fmt == "html" else rendered.text
