"""Send exactly what passed the check.

The `templates` asset renders every template for every segment and keeps what it rendered
with the result (`keep_checked`). Every send path then asks `templates_to_send` for its
templates: the snapshot its own run's check passed, or, where the run had no check (a
`deliveries` materialized alone, the one-off re-send), the current templates after
checking them itself. A failing check refuses the send: nothing goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import TemplateSnapshot, TemplateSnapshots
from xmas_pipeline.core.render import TemplateSource
from xmas_pipeline.core.template_check import snapshot_sources, sources_from_snapshot
from xmas_pipeline.services.rendering import check_supervised


class TemplatesRefused(RuntimeError):
    """The templates fail their check: nothing may be sent with them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        super().__init__(f"the templates fail their check ({shown})")


def keep_checked(
    snapshots: TemplateSnapshots,
    campaign: Campaign,
    run_id: str,
    sources: Mapping[str, TemplateSource],
    problems: list[str],
) -> None:
    """Keep what the check of run `run_id` rendered, with its result."""
    snapshot = TemplateSnapshot(snapshot_sources(sources), list(problems), datetime.now(UTC))
    snapshots.save(campaign, run_id, snapshot)


def templates_to_send(
    snapshots: TemplateSnapshots,
    load: Callable[[], dict[str, TemplateSource]],
    campaign: Campaign,
    run_id: str,
    now: datetime | None = None,
) -> dict[str, TemplateSource]:
    """The templates this run may send with; TemplatesRefused when they fail the check."""
    kept = snapshots.load(run_id)
    if kept is not None:
        if kept.problems:
            raise TemplatesRefused(kept.problems)
        return sources_from_snapshot(kept.sources)
    sources = load()
    problems = check_supervised(sources, campaign, now or datetime.now(UTC)).problems
    if problems:
        raise TemplatesRefused(problems)
    return sources
