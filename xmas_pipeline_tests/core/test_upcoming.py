"""The 7-day forecast of what falls due (`core.upcoming`), on small hand-made frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from xmas_pipeline.core.booking_state import normalise_bookings
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.send_plan import CampaignState
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column
from xmas_pipeline.core.upcoming import upcoming_by_day, upcoming_from_state, upcoming_messages

NOW = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
D = timedelta(days=1)


def sequences(campaign: Campaign, rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"segment": "URGENT", "completed": False}
    data = [{**base, "email": row["contact_key"], **row} for row in rows]
    return normalise_sequences(pd.DataFrame(data), len(campaign.steps))


def bookings(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {
        "status": "active",
        "name": "Jane",
        "time_zone": "UTC",
        "received_at": NOW - D,
        "updated_at": NOW - D,
    }
    data = [{**base, "email": row["contact_key"], **row} for row in rows]
    return normalise_bookings(pd.DataFrame(data))


def found(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return sorted(zip(frame["contact_key"], frame["step_id"], frame["due_day"], strict=True))


def test_each_unsent_step_counts_on_its_due_day(campaign: Campaign) -> None:
    seqs = sequences(
        campaign,
        [
            # Welcome sent an hour ago: emails 2-5 fall in the week (email 5 at +167h).
            {"contact_key": "a@x.com", "signup_at": NOW - H, sent_column(1): NOW - H},
            # Email 2 overdue and unsent: `due_emails` counts it as due, not here.
            {"contact_key": "f@x.com", "signup_at": NOW - 2 * D, sent_column(1): NOW - 2 * D},
        ],
    )
    out = upcoming_messages(seqs, campaign, NOW)
    assert found(out) == [
        ("a@x.com", "email-2", "2025-12-02"),
        ("a@x.com", "email-3", "2025-12-04"),
        ("a@x.com", "email-4", "2025-12-06"),
        ("a@x.com", "email-5", "2025-12-08"),
        ("f@x.com", "email-3", "2025-12-02"),
        ("f@x.com", "email-4", "2025-12-04"),
        ("f@x.com", "email-5", "2025-12-06"),
    ]
    assert set(out["kind"]) == {"nurture"}
    assert out["due_at"].is_monotonic_increasing


def test_the_window_includes_now_and_excludes_now_plus_seven_days(campaign: Campaign) -> None:
    # Signed up exactly now: email 1 is due at `now` (in), email 5 at now + 168h (out).
    seqs = sequences(campaign, [{"contact_key": "b@x.com", "signup_at": NOW}])
    out = upcoming_messages(seqs, campaign, NOW)
    assert out["step_id"].tolist() == ["email-1", "email-2", "email-3", "email-4"]
    later = upcoming_messages(seqs, campaign, NOW + timedelta(seconds=1))
    assert later["step_id"].tolist() == ["email-2", "email-3", "email-4", "email-5"]
    shorter = upcoming_messages(seqs, campaign, NOW, days=1)
    assert shorter["step_id"].tolist() == ["email-1"]


def test_completed_and_exited_sequences_get_nothing(campaign: Campaign) -> None:
    start = {"signup_at": NOW - H, sent_column(1): NOW - H}
    seqs = sequences(
        campaign,
        [
            {"contact_key": "done@x.com", **start, "completed": True},
            {"contact_key": "unsub@x.com", **start, "unsubscribed": True},
            {"contact_key": "bounce@x.com", **start, "delivery_state": "bounced"},
            {"contact_key": "booked@x.com", **start, "booked": True},
            {"contact_key": "paused@x.com", **start, "paused": True},
            {"contact_key": "all-sent@x.com", "signup_at": NOW - 20 * D}
            | {sent_column(n): NOW - D for n in range(1, 8)},
            {"contact_key": "live@x.com", **start},
        ],
    )
    out = upcoming_messages(seqs, campaign, NOW)
    assert set(out["contact_key"]) == {"live@x.com"}
    assert len(out) == 4


def test_reminders_fall_due_before_active_meetings(campaign: Campaign) -> None:
    seqs = sequences(
        campaign,
        [
            # Booked: no more nurture, but the reminders go.
            {"contact_key": "e@x.com", "signup_at": NOW - 3 * D, "booked": True},
            {"contact_key": "unsub@x.com", "signup_at": NOW - 3 * D, "unsubscribed": True},
        ],
    )
    books = bookings(
        [
            {"booking_uid": "bk-1", "contact_key": "e@x.com", "start": NOW + 4 * D},
            # Reminder 2 (24h before) falls exactly on now + 7 days: out.
            {"booking_uid": "bk-2", "contact_key": "g@x.com", "start": NOW + 8 * D},
            {
                "booking_uid": "bk-3",
                "contact_key": "c@x.com",
                "start": NOW + 3 * D,
                "status": "cancelled",
            },
            {"booking_uid": "bk-4", "contact_key": "unsub@x.com", "start": NOW + 3 * D},
            # Booked 1 hour before its meeting: too close, no reminders at all.
            {
                "booking_uid": "bk-7",
                "contact_key": "late@x.com",
                "start": NOW + 30 * timedelta(minutes=1),
                "received_at": NOW - 30 * timedelta(minutes=1),
            },
        ]
    )
    out = upcoming_messages(seqs, campaign, NOW, books)
    assert found(out) == [
        ("e@x.com", "reminder-1", "2025-12-02"),
        ("e@x.com", "reminder-2", "2025-12-04"),
        ("e@x.com", "reminder-3", "2025-12-05"),
        ("g@x.com", "reminder-1", "2025-12-06"),
    ]
    assert set(out["kind"]) == {"reminder"}


def test_a_reminder_sent_before_a_reschedule_is_not_counted_again(campaign: Campaign) -> None:
    seqs = sequences(campaign, [])
    books = bookings(
        [
            {
                "booking_uid": "bk-5",
                "contact_key": "h@x.com",
                "start": NOW + 2 * D,
                "status": "rescheduled",
                "rescheduled_to": "bk-6",
            },
            {
                "booking_uid": "bk-6",
                "contact_key": "h@x.com",
                "start": NOW + 5 * D,
                "previous_uid": "bk-5",
            },
        ]
    )
    log = pd.DataFrame(
        [
            {"booking_uid": "bk-5", "step_number": 1, "status": "sent"},
            # A skip is recorded when its reminder falls due: it never settles one ahead.
            {"booking_uid": "bk-6", "step_number": 2, "status": "skipped"},
        ]
    )
    out = upcoming_messages(seqs, campaign, NOW, books, reminder_log=log)
    assert found(out) == [
        ("h@x.com", "reminder-2", "2025-12-05"),
        ("h@x.com", "reminder-3", "2025-12-06"),
    ]
    unlogged = upcoming_messages(seqs, campaign, NOW, books)
    assert len(unlogged) == 3


def test_the_table_has_every_day_and_step_with_totals(campaign: Campaign) -> None:
    seqs = sequences(
        campaign,
        [
            {"contact_key": "a@x.com", "signup_at": NOW - H, sent_column(1): NOW - H},
            {"contact_key": "b@x.com", "signup_at": NOW + H},
            {"contact_key": "e@x.com", "signup_at": NOW - 3 * D, "booked": True},
        ],
    )
    books = bookings([{"booking_uid": "bk-1", "contact_key": "e@x.com", "start": NOW + 4 * D}])
    # Contact-level flags reach bookers without a sequence, as in a send plan.
    flags = pd.DataFrame(
        [{"contact_key": "gone@x.com", "unsubscribed": True, "paused": False, "delivery_state": ""}]
    )
    books = pd.concat(
        [
            books,
            bookings([{"booking_uid": "bk-9", "contact_key": "gone@x.com", "start": NOW + 4 * D}]),
        ],
        ignore_index=True,
    )
    state = CampaignState(sequences=seqs, contact_flags=flags, bookings=books, reminder_log=None)
    table = upcoming_from_state(state, campaign, NOW)
    steps = [f"email-{n}" for n in range(1, 8)] + [f"reminder-{n}" for n in range(1, 4)]
    assert table.columns.tolist() == ["day", *steps, "total"]
    assert table["day"].tolist() == [
        "2025-12-01 Mon",
        "2025-12-02 Tue",
        "2025-12-03 Wed",
        "2025-12-04 Thu",
        "2025-12-05 Fri",
        "2025-12-06 Sat",
        "2025-12-07 Sun",
        "2025-12-08 Mon",
        "total",
    ]
    rows = table.set_index("day")
    assert rows.loc["2025-12-01 Mon", "email-1"] == 1  # b, an hour from now
    assert rows.loc["2025-12-02 Tue"].to_dict() == {
        **dict.fromkeys(steps, 0),
        "email-2": 2,
        "reminder-1": 1,
        "total": 3,
    }
    assert rows.loc["2025-12-03 Wed", "total"] == 0
    totals = rows.loc["total"].to_dict()
    assert totals == {
        "email-1": 1,
        "email-2": 2,
        "email-3": 2,
        "email-4": 2,
        "email-5": 1,  # a's (b's falls an hour past the window)
        "email-6": 0,
        "email-7": 0,
        "reminder-1": 1,
        "reminder-2": 1,
        "reminder-3": 1,
        "total": 11,
    }
    assert int(rows.drop(index="total")["total"].sum()) == 11


def test_an_empty_state_gives_a_table_of_zeros(campaign: Campaign) -> None:
    out = upcoming_messages(sequences(campaign, []), campaign, NOW)
    assert out.empty
    table = upcoming_by_day(out, campaign, datetime(2025, 12, 1, 0, 0, tzinfo=UTC))
    # From midnight, seven whole days and nothing of the eighth.
    assert len(table) == 8 and table["day"].iloc[-2] == "2025-12-07 Sun"
    assert int(table.drop(columns="day").to_numpy().sum()) == 0
