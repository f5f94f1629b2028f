"""The campaigns one code location runs: the ones that loaded, by slug, the broken ones
with the file at fault and why, and the default campaign's slug.

Also the one rule of which campaign a signup belongs to: the `campaign` the intake kept in
the request details beside its file, else the default campaign (files written before
campaigns were named there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_folders import FolderResult

# The key of the request details (the `.request` sidecar) naming a signup's campaign.
CAMPAIGN_FIELD = "campaign"

E = TypeVar("E")


@dataclass(frozen=True)
class BrokenCampaign:
    """A campaign folder that did not load: the file at fault and the reason."""

    slug: str
    file: str
    reason: str


def _frozen(items: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class CampaignSet:
    """The campaigns of one code location, each by slug, in folder order."""

    default_slug: str
    loaded: Mapping[str, Campaign] = field(default_factory=dict)
    broken: Mapping[str, BrokenCampaign] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views: the set is shared by every definition built from it.
        object.__setattr__(self, "loaded", _frozen(self.loaded))
        object.__setattr__(self, "broken", _frozen(self.broken))

    @classmethod
    def of_one(cls, campaign: Campaign) -> CampaignSet:
        """Exactly one campaign (XMAS_CAMPAIGN_FILE): it is the default."""
        return cls(default_slug=campaign.slug, loaded={campaign.slug: campaign})

    @property
    def default(self) -> Campaign | None:
        """The default campaign, None when its folder is broken or missing."""
        return self.loaded.get(self.default_slug)

    def earliest_start(self) -> str:
        """The earliest start date (YYYY-MM-DD) among the loaded campaigns."""
        if not self.loaded:
            raise ValueError(f"no campaign loads: {self.describe_broken() or 'none found'}")
        return min(c.start_date for c in self.loaded.values())

    def describe_broken(self) -> str:
        return "; ".join(f"{b.file}: {b.reason}" for b in self.broken.values())


def campaign_set(
    results: Iterable[FolderResult],
    default_slug: str,
    adjust: Callable[[Campaign], Campaign] = lambda campaign: campaign,
) -> CampaignSet:
    """The set from a campaigns directory's folders (`discover_campaigns`); `adjust` is
    applied to each loaded campaign (the deployment's link hosts)."""
    loaded: dict[str, Campaign] = {}
    broken: dict[str, BrokenCampaign] = {}
    for result in results:
        if result.campaign is not None:
            loaded[result.slug] = adjust(result.campaign)
        elif result.error is not None:
            broken[result.slug] = BrokenCampaign(
                result.slug, str(result.error.file), result.error.reason
            )
    return CampaignSet(default_slug=default_slug, loaded=loaded, broken=broken)


def signup_campaign(request: Mapping[str, str], default_slug: str) -> str:
    """The campaign a signup was made for: the one its request details name, else the
    default (a file from before the intake wrote it, or one dropped by hand)."""
    named = request.get(CAMPAIGN_FIELD, "").strip()
    return named or default_slug


def shown_slug(slug: str) -> str:
    """A slug as read from a file, safe to show in metadata and logs (short, one line)."""
    plain = "".join(ch if ch.isprintable() else "?" for ch in slug)
    return plain if len(plain) <= 64 else plain[:64] + "..."


@dataclass(frozen=True)
class Routed(Generic[E]):
    """Items by the campaign they name: the loaded campaigns' (every loaded campaign has
    an entry, maybe empty), and those naming a campaign that is not loaded."""

    by_campaign: Mapping[str, list[E]]
    unavailable: Mapping[str, list[E]]

    @property
    def unavailable_count(self) -> int:
        return sum(len(items) for items in self.unavailable.values())


def route(items: Iterable[E], slug_of: Callable[[E], str], campaigns: CampaignSet) -> Routed[E]:
    """Each item to the campaign `slug_of` names. One naming a campaign that is not loaded
    (unknown, or its folder broken) is set apart, never dropped."""
    by_campaign: dict[str, list[E]] = {slug: [] for slug in campaigns.loaded}
    unavailable: dict[str, list[E]] = {}
    for item in items:
        slug = slug_of(item)
        if slug in by_campaign:
            by_campaign[slug].append(item)
        else:
            unavailable.setdefault(slug, []).append(item)
    return Routed(by_campaign=by_campaign, unavailable=unavailable)
