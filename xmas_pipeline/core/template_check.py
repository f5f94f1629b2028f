"""The blocking check of a campaign's templates, and the snapshot a send run keeps of them.

`check_templates` renders every template the campaign uses for every segment's sample
contact (`core.samples`) and lists what is wrong: a template that cannot render, and one
that lacks what every bulk email must carry (`core.render.Renderer.check`).

A send run sends with exactly the templates its check passed: the `templates` asset keeps
them as a snapshot (`snapshot_sources`), `deliveries` renders from that snapshot
(`sources_from_snapshot`), and a send path that has none checks what it loaded itself
before sending anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.render import Renderer, TemplateSource
from xmas_pipeline.core.samples import is_reminder, sample_context
from xmas_pipeline.core.segments import ALL_SEGMENTS


def template_bases(campaign: Campaign) -> list[str]:
    """The base templates the campaign sends (nurture steps, then reminders)."""
    return [s.template for s in campaign.steps] + [r.template for r in campaign.reminders]


def check_templates(renderer: Renderer, campaign: Campaign, now: datetime) -> list[str]:
    """Every template for every segment's sample contact: the problems found ([]: fine)."""
    bases = template_bases(campaign)
    problems: list[str] = []
    for kind_bases in (
        [b for b in bases if not is_reminder(b)],
        [b for b in bases if is_reminder(b)],
    ):
        if kind_bases:
            contexts = {
                segment: sample_context(kind_bases[0], segment, campaign, now)
                for segment in ALL_SEGMENTS
            }
            problems += renderer.check(kind_bases, contexts)
    return problems


def snapshot_sources(sources: Mapping[str, TemplateSource]) -> dict[str, Any]:
    """Template sources as plain data, to keep with a check's result."""
    return {name: asdict(source) for name, source in sources.items()}


def sources_from_snapshot(kept: Mapping[str, Any]) -> dict[str, TemplateSource]:
    """`snapshot_sources` read back."""
    return {name: TemplateSource(**fields) for name, fields in kept.items()}
