"""The due-email computation over a sequences frame, without Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import compute_due, due_in_range
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column

NOW = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)


def frame(campaign: Campaign, rows: list[dict]) -> pd.DataFrame:
    base = {
        "email": "",
        "first_name": "A",
        "assessment_score": 50,
        "segment": "URGENT",
        "completed": False,
    }
    data = []
    for row in rows:
        item = {**base, **row}
        item.setdefault("email", item["contact_key"])
        item["email"] = item["email"] or item["contact_key"]
        data.append(item)
    return normalise_sequences(pd.DataFrame(data), len(campaign.steps))


def test_welcome_is_due_at_signup(campaign: Campaign) -> None:
    seqs = frame(campaign, [{"contact_key": "a@x.com", "signup_at": NOW}])
    due = compute_due(seqs, campaign, NOW)
    assert due[["message_id", "step_number", "action"]].values.tolist() == [
        ["christmas-2025/a@x.com/email-1", 1, "send"]
    ]
    assert due.loc[0, "due_day"] == "2025-12-01"


def test_nothing_due_before_the_delay(campaign: Campaign) -> None:
    seqs = frame(
        campaign,
        [{"contact_key": "a@x.com", "signup_at": NOW - timedelta(hours=23), sent_column(1): NOW}],
    )
    assert compute_due(seqs, campaign, NOW).empty
    later = compute_due(seqs, campaign, NOW + timedelta(hours=1))
    assert later["step_id"].tolist() == ["email-2"]


def test_catch_up_sends_one_per_person_earliest_first(campaign: Campaign) -> None:
    # Down for five days: steps 1-4 are all due, but only one email goes per run.
    seqs = frame(campaign, [{"contact_key": "a@x.com", "signup_at": NOW - timedelta(days=5)}])
    due = compute_due(seqs, campaign, NOW)
    assert due["step_id"].tolist() == ["email-1"]
    seqs.loc[0, sent_column(1)] = NOW
    assert compute_due(seqs, campaign, NOW)["step_id"].tolist() == ["email-2"]


def test_all_sent_or_completed_means_nothing_due(campaign: Campaign) -> None:
    sent = {sent_column(n): NOW for n in range(1, 8)}
    seqs = frame(
        campaign,
        [
            {"contact_key": "a@x.com", "signup_at": NOW - timedelta(days=20), **sent},
            {"contact_key": "b@x.com", "signup_at": NOW - timedelta(days=20), "completed": True},
        ],
    )
    assert compute_due(seqs, campaign, NOW).empty


def test_exit_rules(campaign: Campaign) -> None:
    start = NOW - timedelta(days=2)
    seqs = frame(
        campaign,
        [
            {"contact_key": "booked@x.com", "signup_at": start, "booked": True},
            {"contact_key": "unsub@x.com", "signup_at": start, "unsubscribed": True},
            {"contact_key": "bounce@x.com", "signup_at": start, "delivery_state": "bounced"},
            {"contact_key": "compl@x.com", "signup_at": start, "delivery_state": "complained"},
            {"contact_key": "paused@x.com", "signup_at": start, "paused": True},
            {"contact_key": "ok@x.com", "signup_at": start},
        ],
    )
    due = compute_due(seqs, campaign, NOW).set_index("contact_key")
    assert due.loc["booked@x.com", ["action", "reason"]].tolist() == ["exit", "booked"]
    assert due.loc["unsub@x.com", ["action", "reason"]].tolist() == ["exit", "unsubscribed"]
    assert due.loc["bounce@x.com", ["action", "reason"]].tolist() == ["exit", "bounced"]
    assert due.loc["compl@x.com", ["action", "reason"]].tolist() == ["exit", "complained"]
    assert due.loc["paused@x.com", ["action", "reason"]].tolist() == ["skip", "paused"]
    assert due.loc["ok@x.com", ["action", "reason"]].tolist() == ["send", ""]


def test_booking_rule_can_be_turned_off(campaign: Campaign) -> None:
    keep = campaign.model_copy(
        update={"exit": campaign.exit.model_copy(update={"stop_nurture_on_booking": False})}
    )
    seqs = frame(keep, [{"contact_key": "b@x.com", "signup_at": NOW, "booked": True}])
    assert compute_due(seqs, keep, NOW)["action"].tolist() == ["send"]


def test_testing_mode_minutes(testing_campaign: Campaign) -> None:
    seqs = frame(
        testing_campaign, [{"contact_key": "a@x.com", "signup_at": NOW, sent_column(1): NOW}]
    )
    assert compute_due(seqs, testing_campaign, NOW + timedelta(seconds=59)).empty
    assert compute_due(seqs, testing_campaign, NOW + timedelta(minutes=1))["step_id"].tolist() == [
        "email-2"
    ]


def test_due_in_range_filters_by_due_day(campaign: Campaign) -> None:
    seqs = frame(
        campaign,
        [
            {"contact_key": "old@x.com", "signup_at": NOW - timedelta(days=3)},
            {"contact_key": "new@x.com", "signup_at": NOW},
        ],
    )
    due = compute_due(seqs, campaign, NOW)
    assert due_in_range(due, "2025-12-01", "2025-12-01")["contact_key"].tolist() == ["new@x.com"]
    assert len(due_in_range(due, "2025-11-01", "2025-12-01")) == 2


def test_empty_frames(campaign: Campaign) -> None:
    empty = normalise_sequences(pd.DataFrame(), len(campaign.steps))
    assert compute_due(empty, campaign, NOW).empty
