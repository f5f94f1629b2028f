"""The `signups_close` rule (`core.signups_close`): the close date's last open moment, in
the campaign's default time zone, and who is still ingested after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE, Campaign
from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.core.signups_close import closes_at, signups_open, split_after_close

TICK = timedelta(microseconds=1)


def _campaign(**fields: object) -> Campaign:
    raw = yaml.safe_load(DEFAULT_CAMPAIGN_FILE.read_text(encoding="utf-8"))
    raw.update(fields)
    return Campaign.model_validate(raw)


def _event(email: str, at: datetime) -> SignupEvent:
    signup = Signup.model_validate(
        {
            "email": email,
            "first_name": "Sam",
            "business_name": "Sam's Salon",
            "assessment_score": 47,
            "red_systems": 0,
            "orange_systems": 0,
            "yellow_systems": 2,
            "green_systems": 3,
            "gps_score": 50,
            "money_score": 40,
            "weakest_system_1": "Bookings",
            "weakest_system_2": "Follow-up",
            "revenue_leak_total": 3500,
        }
    )
    return SignupEvent(signup=signup, received_at=at, source=f"signups/x/{email}.json")


def test_no_close_date_never_closes() -> None:
    campaign = _campaign()
    assert closes_at(campaign) is None
    assert signups_open(campaign, datetime(2099, 1, 1, tzinfo=UTC))


def test_the_whole_close_day_is_open_in_the_default_zone() -> None:
    # America/Toronto (the default) is UTC-5 in December: the 24th ends at 05:00 UTC.
    campaign = _campaign(signups_close="2025-12-24")
    end = datetime(2025, 12, 25, 5, 0, tzinfo=UTC)
    assert closes_at(campaign) == end
    assert signups_open(campaign, end - TICK)  # the last open moment: 23:59:59.999999
    assert not signups_open(campaign, end)
    assert not signups_open(campaign, end + timedelta(days=30))
    # Already the 25th in UTC, still the 24th in Toronto: taken.
    assert signups_open(campaign, datetime(2025, 12, 25, 1, 0, tzinfo=UTC))
    assert signups_open(campaign, datetime(2025, 12, 1, tzinfo=UTC))


def test_the_campaign_zone_decides() -> None:
    auckland = _campaign(
        signups_close="2025-12-24", send_window={"default_time_zone": "Pacific/Auckland"}
    )
    # Auckland is UTC+13 in December: the 24th ends at 11:00 UTC on the 24th.
    end = datetime(2025, 12, 24, 11, 0, tzinfo=UTC)
    assert closes_at(auckland) == end
    assert signups_open(auckland, end - TICK) and not signups_open(auckland, end)
    # Any aware time is compared as the same instant.
    local = end.astimezone(datetime.now(UTC).astimezone().tzinfo)
    assert not signups_open(auckland, local)


def test_the_testing_preset_keeps_a_zone_without_its_window() -> None:
    campaign = _campaign(signups_close="2025-12-24").for_testing()
    assert campaign.send_window is None
    assert closes_at(campaign) == datetime(2025, 12, 25, 5, 0, tzinfo=UTC)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        signups_open(_campaign(signups_close="2025-12-24"), datetime(2025, 12, 1))


def test_after_the_close_only_people_already_enrolled_are_ingested() -> None:
    campaign = _campaign(signups_close="2025-12-24")
    before = datetime(2025, 12, 24, 12, 0, tzinfo=UTC)
    after = datetime(2025, 12, 26, 12, 0, tzinfo=UTC)
    early = _event("early@example.com", before)
    retake = _event("known@example.com", after)  # enrolled in an earlier run
    same_day = _event("early@example.com", after)  # enrolled earlier in this batch
    newcomer = _event("late@example.com", after)
    taken, closed = split_after_close(
        campaign, [retake, newcomer, early, same_day], enrolled={"known@example.com"}
    )
    assert taken == [retake, early, same_day]  # the batch's order kept
    assert closed == [newcomer]
    # An open campaign takes everyone.
    assert split_after_close(_campaign(), [newcomer], enrolled=()) == ([newcomer], [])
