"""The blocking check of a campaign's templates, and the snapshot a send run keeps of them.

The check renders every template the campaign uses for every segment's sample contact
(`core.samples`), one `CheckUnit` at a time, and lists what is wrong: a template that
cannot render (a limit hit included: `core.render_limits`), one that lacks what every bulk
email must carry, one that points anywhere but the campaign's allowed hosts
(`core.render.Renderer.check_one`). `services/rendering.py` runs the units in a child
process, so that not even a runaway template can stop the check; `check_templates` here
runs them in this process.

A send run sends with exactly the templates its check passed: the `templates` asset keeps
them as a snapshot (`snapshot_sources`), `deliveries` renders from that snapshot
(`sources_from_snapshot`), and a send path that has none checks what it loaded itself
before sending anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.render import RenderedEmail, Renderer, TemplateSource
from xmas_pipeline.core.samples import sample_context
from xmas_pipeline.core.segments import ALL_SEGMENTS, Segment


def template_bases(campaign: Campaign) -> list[str]:
    """The base templates the campaign sends (nurture steps, reminders, and with double
    opt-in the confirmation)."""
    bases = [s.template for s in campaign.steps] + [r.template for r in campaign.reminders]
    return [*bases, campaign.confirm_template] if campaign.double_opt_in else bases


@dataclass(frozen=True)
class CheckUnit:
    """One template for one segment's sample contact."""

    base: str
    segment: Segment
    context: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.base} [{self.segment}]"


@dataclass(frozen=True)
class UnitResult:
    problems: list[str]
    rendered: RenderedEmail | None  # None when it could not render


def check_units(campaign: Campaign, now: datetime) -> list[CheckUnit]:
    return [
        CheckUnit(base, segment, sample_context(base, segment, campaign, now))
        for base in template_bases(campaign)
        for segment in ALL_SEGMENTS
    ]


def check_unit(renderer: Renderer, unit: CheckUnit, campaign: Campaign) -> UnitResult:
    problems, rendered = renderer.check_one(
        unit.base, unit.segment, unit.context, sorted(campaign.link_hosts())
    )
    return UnitResult(problems, rendered)


def check_templates(renderer: Renderer, campaign: Campaign, now: datetime) -> list[str]:
    """Every template for every segment's sample contact, in this process: the problems
    found ([]: fine)."""
    return [
        problem
        for unit in check_units(campaign, now)
        for problem in check_unit(renderer, unit, campaign).problems
    ]


def snapshot_sources(sources: Mapping[str, TemplateSource]) -> dict[str, Any]:
    """Template sources as plain data, to keep with a check's result."""
    return {name: asdict(source) for name, source in sources.items()}


def sources_from_snapshot(kept: Mapping[str, Any]) -> dict[str, TemplateSource]:
    """`snapshot_sources` read back."""
    return {name: TemplateSource(**fields) for name, fields in kept.items()}
