"""Which campaign a signup belongs to, and nothing naming another campaign is dropped."""

from __future__ import annotations

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_set import (
    BrokenCampaign,
    CampaignSet,
    route,
    shown_slug,
    signup_campaign,
)


def _set(campaign: Campaign) -> CampaignSet:
    other = campaign.model_copy(update={"slug": "spring-2026", "start_date": "2026-03-01"})
    return CampaignSet(
        default_slug=campaign.slug,
        loaded={campaign.slug: campaign, other.slug: other},
        broken={"easter-2026": BrokenCampaign("easter-2026", "x/campaign.yaml", "bad")},
    )


def test_a_signup_names_its_campaign_or_is_the_defaults() -> None:
    assert signup_campaign({"campaign": "spring-2026"}, "christmas-2025") == "spring-2026"
    assert signup_campaign({"ip": "1.2.3.4"}, "christmas-2025") == "christmas-2025"
    assert signup_campaign({"campaign": "  "}, "christmas-2025") == "christmas-2025"


def test_routing_keeps_what_names_a_campaign_not_loaded(campaign: Campaign) -> None:
    campaigns = _set(campaign)
    items = [("a", "christmas-2025"), ("b", "spring-2026"), ("c", "easter-2026"), ("d", "nope")]
    routed = route(items, lambda item: item[1], campaigns)
    assert routed.by_campaign == {"christmas-2025": [items[0]], "spring-2026": [items[1]]}
    assert routed.unavailable == {"easter-2026": [items[2]], "nope": [items[3]]}
    assert routed.unavailable_count == 2
    # Every loaded campaign has its entry, even with nothing this time.
    assert route([], lambda item: item, campaigns).by_campaign == {
        "christmas-2025": [],
        "spring-2026": [],
    }


def test_the_set_knows_its_default_and_earliest_start(campaign: Campaign) -> None:
    campaigns = _set(campaign)
    assert campaigns.default is campaigns.loaded[campaign.slug]
    assert campaigns.earliest_start() == campaign.start_date
    assert CampaignSet.of_one(campaign).default_slug == campaign.slug
    assert "x/campaign.yaml: bad" in campaigns.describe_broken()
    assert CampaignSet(default_slug="gone").default is None


def test_a_slug_read_from_a_file_is_shown_safely() -> None:
    assert shown_slug("spring-2026") == "spring-2026"
    assert shown_slug("a\nb") == "a?b"
    assert shown_slug("x" * 100) == "x" * 64 + "..."
