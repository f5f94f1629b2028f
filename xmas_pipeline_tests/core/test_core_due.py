"""The due-email computation over a sequences frame, without Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

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


def test_nothing_due_before_the_delay(unpaced_campaign: Campaign) -> None:
    campaign = unpaced_campaign
    seqs = frame(
        campaign,
        [{"contact_key": "a@x.com", "signup_at": NOW - timedelta(hours=23), sent_column(1): NOW}],
    )
    assert compute_due(seqs, campaign, NOW).empty
    later = compute_due(seqs, campaign, NOW + timedelta(hours=1))
    assert later["step_id"].tolist() == ["email-2"]


def test_catch_up_sends_one_per_person_earliest_first(unpaced_campaign: Campaign) -> None:
    campaign = unpaced_campaign
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
    # Welcomed two days ago, in a zone where it is daytime now: email-2 is due.
    welcomed = {sent_column(1): start, "time_zone": "Europe/London"}
    seqs = frame(
        campaign,
        [
            {"contact_key": "booked@x.com", "signup_at": start, "booked": True, **welcomed},
            {"contact_key": "booked-first@x.com", "signup_at": start, "booked": True},
            {"contact_key": "unsub@x.com", "signup_at": start, "unsubscribed": True},
            {"contact_key": "bounce@x.com", "signup_at": start, "delivery_state": "bounced"},
            {"contact_key": "compl@x.com", "signup_at": start, "delivery_state": "complained"},
            {"contact_key": "paused@x.com", "signup_at": start, "paused": True},
            {"contact_key": "ok@x.com", "signup_at": start},
        ],
    )
    due = compute_due(seqs, campaign, NOW).set_index("contact_key")
    assert due.loc["booked@x.com", ["action", "reason"]].tolist() == ["exit", "booked"]
    # A booking stops the follow-ups, never the person's own results (email 1).
    first = due.loc["booked-first@x.com"]
    assert [first["step_id"], first["action"]] == ["email-1", "send"]
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


# -- the send window and the minimum gap -------------------------------------------------------

TORONTO_7AM = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)  # 07:00 in Toronto, 12:00 in London


def test_later_emails_wait_for_the_window_in_the_readers_own_zone(campaign: Campaign) -> None:
    signed = TORONTO_7AM - timedelta(days=2)
    rows = [
        {"contact_key": "toronto@x.com", "signup_at": signed, sent_column(1): signed},
        {"contact_key": "unknown-zone@x.com", "signup_at": signed, sent_column(1): signed},
        {
            "contact_key": "london@x.com",
            "signup_at": signed,
            sent_column(1): signed,
            "time_zone": "Europe/London",
        },
    ]
    rows[0]["time_zone"] = "America/Toronto"
    seqs = frame(campaign, rows)
    # 07:00 in Toronto (and the campaign's default zone): closed; 12:00 in London: open.
    assert compute_due(seqs, campaign, TORONTO_7AM)["contact_key"].tolist() == ["london@x.com"]
    at_eight = compute_due(seqs, campaign, TORONTO_7AM + timedelta(hours=1))
    assert sorted(at_eight["contact_key"]) == [
        "london@x.com",
        "toronto@x.com",
        "unknown-zone@x.com",
    ]
    # 20:00 in London closes the window there; Toronto is open until its own 20:00.
    evening = compute_due(seqs, campaign, datetime(2025, 12, 1, 20, 30, tzinfo=UTC))
    assert sorted(evening["contact_key"]) == ["toronto@x.com", "unknown-zone@x.com"]
    # The message keeps its id and due time: it is late, not rescheduled.
    assert set(at_eight["due_at"]) == {signed + timedelta(hours=24)}


def test_the_welcome_answers_the_signup_whatever_the_hour(campaign: Campaign) -> None:
    night = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)  # 03:00 in Toronto
    seqs = frame(campaign, [{"contact_key": "a@x.com", "signup_at": night}])
    assert compute_due(seqs, campaign, night)["step_id"].tolist() == ["email-1"]


def test_never_two_nurture_emails_less_than_the_gap_apart(campaign: Campaign) -> None:
    assert campaign.min_gap == timedelta(hours=20)
    noon = datetime(2025, 12, 10, 17, 0, tzinfo=UTC)  # 12:00 in Toronto: window open
    signed = noon - timedelta(days=5)  # email-2 due four days ago
    seqs = frame(
        campaign,
        [
            {
                "contact_key": "a@x.com",
                "signup_at": signed,
                sent_column(1): noon - timedelta(hours=19),
            }
        ],
    )
    assert compute_due(seqs, campaign, noon).empty
    assert compute_due(seqs, campaign, noon + timedelta(hours=1))["step_id"].tolist() == ["email-2"]


def test_a_catch_up_after_a_two_day_pause_spreads_over_days_in_daytime(
    campaign: Campaign,
) -> None:
    """Signed up, welcomed, then the campaign was paused for two days. Runs every 15
    minutes afterwards: one email at a time, 20 h apart at least, never at night."""
    start = datetime(2025, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in Toronto
    seqs = frame(campaign, [{"contact_key": "a@x.com", "signup_at": start, sent_column(1): start}])
    sends = []
    now = start + timedelta(days=2)  # the pause ends
    while now < start + timedelta(days=14):
        due = compute_due(seqs, campaign, now)
        if not due.empty:
            number = int(due.loc[0, "step_number"])
            seqs.loc[0, sent_column(number)] = now
            sends.append((number, now))
        now += timedelta(minutes=15)
    assert [n for n, _ in sends] == [2, 3, 4, 5, 6, 7]
    moments = [start] + [at for _, at in sends]
    assert all(b - a >= timedelta(hours=20) for a, b in zip(moments, moments[1:], strict=False))
    toronto = [at.astimezone(ZoneInfo("America/Toronto")) for _, at in sends]
    assert all(8 <= t.hour < 20 for t in toronto)
    # The first after the pause goes at once: it is daytime and the gap is long past.
    assert sends[0][1] == start + timedelta(days=2)


def test_testing_mode_ignores_the_window_and_the_gap(testing_campaign: Campaign) -> None:
    assert testing_campaign.send_window is None and testing_campaign.min_gap <= timedelta(minutes=1)
    night = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)
    seqs = frame(
        testing_campaign, [{"contact_key": "a@x.com", "signup_at": night, sent_column(1): night}]
    )
    later = compute_due(seqs, testing_campaign, night + timedelta(minutes=1))
    assert later["step_id"].tolist() == ["email-2"]


def test_a_signups_unknown_time_zone_is_dropped_not_refused() -> None:
    from xmas_pipeline.core.signup import Signup

    base = {"email": "a@example.com", "first_name": "A", "assessment_score": 40}
    assert Signup.model_validate({**base, "timezone": "Europe/Paris"}).timezone == "Europe/Paris"
    assert Signup.model_validate({**base, "timezone": "Mars/Olympus"}).timezone == ""
    assert Signup.model_validate({**base, "timezone": "../../etc/passwd"}).timezone == ""


def test_welcomes_go_before_follow_ups_in_a_busy_run(testing_campaign: Campaign) -> None:
    """An early signup's follow-up fell due before a late signup's welcome: the welcome
    still goes first (measured: with 10,000 signups in a burst, the last welcomes waited
    behind 9,900 follow-ups)."""
    from xmas_pipeline.core.send_plan import CampaignState, plan_due

    early = NOW - timedelta(minutes=5)
    seqs = frame(
        testing_campaign,
        [
            {"contact_key": "early@x.com", "signup_at": early, "email_1_sent": early},
            {"contact_key": "late@x.com", "signup_at": NOW - timedelta(seconds=10)},
        ],
    )
    plan, _ = plan_due(CampaignState(seqs), testing_campaign, NOW)
    sends = plan[plan["action"] == "send"]
    assert sends["message_id"].tolist() == [
        "christmas-2025/late@x.com/email-1",
        "christmas-2025/early@x.com/email-2",
    ]
    assert sends.iloc[1]["due_at"] < sends.iloc[0]["due_at"]  # due earlier, sent later
