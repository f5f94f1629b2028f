"""Pre-call reminders, travelling in time through every offset and edge (no Dagster).

A small simulator stands in for the pipeline: webhooks are parsed and folded into booking
state; each "run" computes the due reminders, records skips with their reasons, re-reads
the booking just before "sending", and keeps a log like the store's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from xmas_pipeline.core.booking_state import (
    BookingState,
    bookings_frame,
    bookings_from_frame,
    contact_booking_updates,
    fold_booking_events,
)
from xmas_pipeline.core.bookings import BookingEvent, parse_api_booking, parse_webhook
from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.due import DUE_COLUMNS
from xmas_pipeline.core.exit_rules import EXIT, SEND, SKIP
from xmas_pipeline.core.reminders import (
    BOOKING_CANCELLED,
    BOOKING_MOVED,
    BOOKING_RESCHEDULED,
    MEETING_STARTED,
    PASSED_BEFORE_BOOKING,
    SUPERSEDED,
    TOO_CLOSE,
    compute_due_reminders,
    settled_reminders,
    stale_reason,
)
from xmas_pipeline_tests.support.calcom_payloads import (
    api_booking,
    webhook_cancelled,
    webhook_created,
    webhook_rescheduled,
)

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
CAMPAIGN = load_campaign()
TESTING = load_campaign(testing_mode=True)


@dataclass
class Sent:
    at: datetime
    step_id: str
    booking_uid: str
    meeting_start: datetime
    time_zone: str
    meeting_url: str
    message_id: str


@dataclass
class Sim:
    campaign: Campaign = field(default_factory=lambda: CAMPAIGN)
    contacts: pd.DataFrame | None = None
    states: dict[str, BookingState] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[Sent] = field(default_factory=list)
    before_send: Callable[[], None] | None = None

    def webhook(self, body: dict[str, Any], received: datetime | None = None) -> None:
        event = parse_webhook(body, received_at=received or T0)
        assert event is not None
        self.apply([event])

    def apply(self, events: list[BookingEvent]) -> None:
        # Round-trip through the frame each time, as a store would.
        known = bookings_from_frame(bookings_frame(self.states))
        self.states = fold_booking_events(events, known)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        # Rebuilt only when something changed: the tests run thousands of simulated runs.
        key = (id(self.states), len(self.log))
        if getattr(self, "_key", None) != key:
            columns = ["booking_uid", "step_number", "status", "reason", "due_at"]
            log = pd.DataFrame(self.log, columns=columns)
            self._frames = (bookings_frame(self.states), settled_reminders(log))
            self._key = key
        return self._frames

    def run(self, now: datetime) -> pd.DataFrame:
        bookings, settled = self.frames()
        due = compute_due_reminders(bookings, settled, self.campaign, now, self.contacts)
        if self.before_send is not None:
            self.before_send()
        for row in due.to_dict("records"):
            entry = {k: row[k] for k in ("booking_uid", "step_number", "due_at")}
            if row["action"] != SEND:
                self.log.append({**entry, "status": "skipped", "reason": row["reason"]})
                continue
            reason = stale_reason(row, self.states.get(row["booking_uid"]))  # the re-read
            if reason:
                self.log.append({**entry, "status": "skipped", "reason": reason})
                continue
            self.outbox.append(
                Sent(
                    now,
                    row["step_id"],
                    row["booking_uid"],
                    row["meeting_start"],
                    row["time_zone"],
                    row["meeting_url"],
                    row["message_id"],
                )
            )
            self.log.append({**entry, "status": "sent", "reason": ""})
        return due

    def travel(self, start: datetime, end: datetime, step: timedelta = 30 * M) -> None:
        now = start
        while now <= end:
            self.run(now)
            now += step

    def steps(self) -> list[str]:
        return [s.step_id for s in self.outbox]

    def skips(self) -> list[tuple[int, str]]:
        return [(e["step_number"], e["reason"]) for e in self.log if e["status"] == "skipped"]


def test_booking_73h_ahead_gets_all_three_each_at_its_time() -> None:
    sim = Sim()
    start = T0 + 73 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start + H)
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]
    offsets = [start - s.at for s in sim.outbox]
    # Sent at the first run at or after each due time (runs every 30 minutes here).
    for sent_before, due_before in zip(offsets, (72 * H, 24 * H, 2 * H), strict=True):
        assert due_before - 30 * M < sent_before <= due_before
    assert {s.meeting_start for s in sim.outbox} == {pd.Timestamp(start)}
    assert sim.outbox[0].time_zone == "America/Toronto"
    assert sim.outbox[0].meeting_url == "https://app.cal.com/video/bkA"
    assert sim.outbox[0].message_id == "christmas-2025/jane@example.com/reminder-1/bkA"
    assert sim.skips() == []


def test_booking_1h59m_ahead_gets_none_and_says_why_once() -> None:
    sim = Sim()
    start = T0 + H + 59 * M
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start + H, step=M)
    assert sim.outbox == []
    assert sorted(sim.skips()) == [(1, TOO_CLOSE), (2, TOO_CLOSE), (3, TOO_CLOSE)]


def test_booking_exactly_2h_ahead_gets_the_last_reminder() -> None:
    sim = Sim()
    start = T0 + 2 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start, step=M)
    assert sim.steps() == ["reminder-3"]
    assert sim.outbox[0].at == T0
    assert sorted(sim.skips()) == [(1, PASSED_BEFORE_BOOKING), (2, PASSED_BEFORE_BOOKING)]


def test_offsets_past_at_booking_are_skipped_not_caught_up() -> None:
    sim = Sim()
    start = T0 + 25 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start)
    assert sim.steps() == ["reminder-2", "reminder-3"]
    assert sim.skips() == [(1, PASSED_BEFORE_BOOKING)]


def test_reschedule_after_reminder_1_moves_the_rest_and_never_repeats_it() -> None:
    sim = Sim()
    old_start = T0 + 100 * H
    sim.webhook(webhook_created("bkOld", old_start, at=T0))
    sim.travel(T0, T0 + 30 * H)
    assert sim.steps() == ["reminder-1"]

    new_start = T0 + 130 * H
    moved_at = T0 + 30 * H + 5 * M
    sim.webhook(
        webhook_rescheduled("bkNew", new_start, old_uid="bkOld", old_start=old_start, at=moved_at)
    )
    assert sim.states["bkOld"].status == "rescheduled"
    assert sim.states["bkNew"].previous_uid == "bkOld"
    sim.travel(moved_at, new_start + H)

    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]
    later = sim.outbox[1:]
    assert {s.booking_uid for s in later} == {"bkNew"}
    assert {s.meeting_start for s in later} == {pd.Timestamp(new_start)}  # the new time
    assert all(new_start - s.at <= 24 * H for s in later)
    assert sim.skips() == []  # the old booking's pending reminders simply stop


def test_reschedule_to_an_earlier_time_skips_offsets_already_past() -> None:
    sim = Sim()
    sim.webhook(webhook_created("bkOld", T0 + 100 * H, at=T0))
    sim.travel(T0, T0 + 30 * H)  # reminder-1 sent at +28h
    moved_at = T0 + 30 * H
    new_start = moved_at + 20 * H
    sim.webhook(
        webhook_rescheduled(
            "bkNew", new_start, old_uid="bkOld", old_start=T0 + 100 * H, at=moved_at
        )
    )
    sim.travel(moved_at, new_start)
    assert sim.steps() == ["reminder-1", "reminder-3"]
    assert sim.outbox[-1].meeting_start == pd.Timestamp(new_start)
    assert sim.skips() == [(2, PASSED_BEFORE_BOOKING)]


def test_reschedule_chain_inherits_every_sent_offset() -> None:
    sim = Sim()
    a_start, b_start, c_start = T0 + 100 * H, T0 + 110 * H, T0 + 140 * H
    sim.webhook(webhook_created("bkA", a_start, at=T0))
    sim.travel(T0, T0 + 30 * H)  # reminder-1 for A
    sim.webhook(
        webhook_rescheduled("bkB", b_start, old_uid="bkA", old_start=a_start, at=T0 + 31 * H)
    )
    sim.travel(T0 + 31 * H, T0 + 90 * H)  # reminder-2 for B (due +86h)
    sim.webhook(
        webhook_rescheduled("bkC", c_start, old_uid="bkB", old_start=b_start, at=T0 + 91 * H)
    )
    sim.travel(T0 + 91 * H, c_start)
    assert [(s.step_id, s.booking_uid) for s in sim.outbox] == [
        ("reminder-1", "bkA"),
        ("reminder-2", "bkB"),
        ("reminder-3", "bkC"),
    ]


def test_cancellation_between_reminders_stops_them() -> None:
    sim = Sim()
    start = T0 + 100 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, T0 + 50 * H)
    sim.webhook(webhook_cancelled("bkA", start, at=T0 + 50 * H))
    sim.travel(T0 + 50 * H, start + H)
    assert sim.steps() == ["reminder-1"]
    assert sim.states["bkA"].status == "cancelled"


def test_cancellation_arriving_between_compute_and_send_is_caught_by_the_re_read() -> None:
    sim = Sim()
    start = T0 + 100 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.before_send = lambda: sim.webhook(webhook_cancelled("bkA", start, at=T0 + 28 * H))
    due = sim.run(T0 + 28 * H)
    assert list(due["action"]) == [SEND]  # computed before the cancellation landed
    assert sim.outbox == []
    assert sim.skips() == [(1, BOOKING_CANCELLED)]
    sim.before_send = None
    sim.travel(T0 + 28 * H, start + H)
    assert sim.outbox == []


def test_reschedule_arriving_between_compute_and_send_never_sends_the_old_time() -> None:
    sim = Sim()
    start = T0 + 100 * H
    new_start = start + 10 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.before_send = lambda: sim.webhook(
        webhook_rescheduled("bkB", new_start, old_uid="bkA", old_start=start, at=T0 + 28 * H)
    )
    sim.run(T0 + 28 * H)
    assert sim.outbox == []
    assert sim.skips() == [(1, BOOKING_RESCHEDULED)]
    sim.before_send = None
    sim.travel(T0 + 28 * H, new_start)
    assert [(s.step_id, s.booking_uid) for s in sim.outbox] == [
        ("reminder-1", "bkB"),
        ("reminder-2", "bkB"),
        ("reminder-3", "bkB"),
    ]
    assert {s.meeting_start for s in sim.outbox} == {pd.Timestamp(new_start)}


def test_same_webhook_delivered_twice_changes_nothing() -> None:
    start = T0 + 80 * H
    body = webhook_created("bkA", start, at=T0)
    once = fold_booking_events([parse_webhook(body, received_at=T0)])  # type: ignore[list-item]
    twice = fold_booking_events(
        [parse_webhook(body, received_at=T0)],
        once,  # type: ignore[list-item]
    )
    pd.testing.assert_frame_equal(bookings_frame(once), bookings_frame(twice))

    sim = Sim()
    sim.webhook(body)
    sim.travel(T0, T0 + 20 * H)
    sim.webhook(body, received=T0 + 20 * H)  # re-delivered much later
    sim.travel(T0 + 20 * H, start)
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]


def test_redelivered_cancel_and_reschedule_are_idempotent() -> None:
    start = T0 + 80 * H
    events = [
        parse_webhook(webhook_created("bkA", start, at=T0), received_at=T0),
        parse_webhook(
            webhook_rescheduled("bkB", start + H, old_uid="bkA", old_start=start, at=T0 + H),
            received_at=T0,
        ),
        parse_webhook(webhook_cancelled("bkB", start + H, at=T0 + 2 * H), received_at=T0),
    ]
    once = fold_booking_events(events)  # type: ignore[arg-type]
    again = fold_booking_events(events, once)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(bookings_frame(once), bookings_frame(again))
    # Applying them one by one, in any delivery order, gives the same state.
    for order in ([2, 0, 1], [1, 2, 0], [0, 2, 1]):
        state: dict[str, BookingState] = {}
        for i in order:
            state = fold_booking_events([events[i]], state)  # type: ignore[list-item]
        assert {u: s.status for u, s in state.items()} == {
            "bkA": "rescheduled",
            "bkB": "cancelled",
        }


def test_webhook_and_api_poll_of_the_same_booking_send_once() -> None:
    sim = Sim()
    start = T0 + 80 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    item = api_booking("bkA", start, created=T0, updated=T0 + M)
    for _ in range(3):  # overlapping polls see it again
        sim.apply([parse_api_booking(item)])  # type: ignore[list-item]
    sim.travel(T0, start)
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]


def test_api_reschedule_pair_retires_the_old_booking() -> None:
    start = T0 + 80 * H
    events = [
        parse_api_booking(api_booking("bkA", start, created=T0)),
        parse_api_booking(
            api_booking(
                "bkA", start, created=T0, updated=T0 + H, status="cancelled", rescheduled_to="bkB"
            )
        ),
        parse_api_booking(
            api_booking("bkB", start + 5 * H, created=T0 + H, rescheduled_from="bkA")
        ),
    ]
    state = fold_booking_events(events)  # type: ignore[arg-type]
    assert state["bkA"].status == "rescheduled"
    assert state["bkB"].status == "active" and state["bkB"].previous_uid == "bkA"
    (update,) = contact_booking_updates(state, ["jane@example.com"])
    assert update.booking_status == "Booked" and update.booking_uid == "bkB"


def test_catching_up_sends_only_the_latest_and_supersedes_the_rest() -> None:
    sim = Sim()
    start = T0 + 100 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    due = sim.run(T0 + 77 * H)  # the pipeline was down from T0 until now
    assert list(zip(due["step_id"], due["action"], due["reason"], strict=True)) == [
        ("reminder-1", EXIT, SUPERSEDED),
        ("reminder-2", SEND, ""),
    ]
    sim.travel(T0 + 77 * H, start)
    assert sim.steps() == ["reminder-2", "reminder-3"]
    assert sim.skips() == [(1, SUPERSEDED)]


def test_nothing_is_sent_once_the_meeting_has_started() -> None:
    sim = Sim()
    start = T0 + 30 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.run(start + 5 * M)
    assert sim.outbox == []
    assert sorted(sim.skips()) == [
        (1, PASSED_BEFORE_BOOKING),
        (2, MEETING_STARTED),
        (3, MEETING_STARTED),
    ]
    assert sim.run(start + H).empty  # recorded once


def contacts(**flags: Any) -> pd.DataFrame:
    row = {
        "contact_key": "jane@example.com",
        "unsubscribed": False,
        "paused": False,
        "delivery_state": "",
        "segment": "URGENT",
    }
    row.update(flags)
    return pd.DataFrame([row])


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"unsubscribed": True}, "unsubscribed"),
        ({"delivery_state": "bounced"}, "bounced"),
        ({"delivery_state": "complained"}, "complained"),
    ],
)
def test_stop_all_contacts_get_no_reminders(flags: dict[str, Any], reason: str) -> None:
    sim = Sim(contacts=contacts(**flags))
    start = T0 + 80 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start)
    assert sim.outbox == []
    assert sim.skips() == [(1, reason), (2, reason), (3, reason)]


def test_paused_contact_is_skipped_until_unpaused() -> None:
    sim = Sim(contacts=contacts(paused=True))
    start = T0 + 80 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, T0 + 10 * H, step=H)  # reminder-1 due at +8h: skipped, visibly, each run
    assert sim.outbox == []
    assert sim.skips() == [(1, "paused"), (1, "paused"), (1, "paused")]
    sim.contacts = contacts(paused=False)
    sim.travel(T0 + 11 * H, start)
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]


def test_segment_comes_from_the_contact_and_a_stranger_still_gets_reminders() -> None:
    start = T0 + 80 * H
    state = fold_booking_events(
        [parse_webhook(webhook_created("bkA", start, at=T0), received_at=T0)]  # type: ignore[list-item]
    )
    frame = bookings_frame(state)
    known = compute_due_reminders(frame, None, CAMPAIGN, T0 + 8 * H, contacts())
    stranger = compute_due_reminders(frame, None, CAMPAIGN, T0 + 8 * H, None)
    assert list(known["segment"]) == ["URGENT"]
    assert list(stranger["segment"]) == [""]
    assert list(stranger["action"]) == [SEND]
    assert list(known.columns[: len(DUE_COLUMNS)]) == DUE_COLUMNS
    assert known.loc[0, "kind"] == "reminder" and known.loc[0, "due_day"] == "2025-12-01"


def test_in_place_time_change_keeps_sent_offsets_and_uses_the_new_time() -> None:
    sim = Sim()
    start = T0 + 100 * H
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, T0 + 30 * H)
    later = start + 24 * H
    body = webhook_rescheduled("bkA", later, old_uid="bkA", old_start=start, at=T0 + 31 * H)
    sim.webhook(body)
    assert sim.states["bkA"].status == "active" and sim.states["bkA"].start == later
    sim.travel(T0 + 31 * H, later)
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]
    assert sim.outbox[-1].meeting_start == pd.Timestamp(later)


def test_stale_reason_catches_a_moved_time() -> None:
    start = T0 + 100 * H
    state = fold_booking_events(
        [parse_webhook(webhook_created("bkA", start, at=T0), received_at=T0)]  # type: ignore[list-item]
    )
    due = compute_due_reminders(bookings_frame(state), None, CAMPAIGN, T0 + 28 * H)
    row = due.to_dict("records")[0]
    assert stale_reason(row, state["bkA"]) == ""
    moved = state["bkA"].model_copy(update={"start": start + H})
    assert stale_reason(row, moved) == BOOKING_MOVED
    assert stale_reason(row, None) != ""


def test_cancel_before_create_stays_cancelled() -> None:
    start = T0 + 80 * H
    cancel = parse_webhook(webhook_cancelled("bkA", start, at=T0 + H), received_at=T0)
    create = parse_webhook(webhook_created("bkA", start, at=T0), received_at=T0)
    state = fold_booking_events([cancel])  # type: ignore[list-item]
    state = fold_booking_events([create], state)  # type: ignore[list-item]
    assert state["bkA"].status == "cancelled"
    assert compute_due_reminders(bookings_frame(state), None, CAMPAIGN, start - H).empty


def test_contact_updates_booked_then_not_booked() -> None:
    start = T0 + 80 * H
    created = parse_webhook(webhook_created("bkA", start, at=T0), received_at=T0)
    state = fold_booking_events([created])  # type: ignore[list-item]
    (booked,) = contact_booking_updates(state, ["jane@example.com"])
    assert booked.booking_status == "Booked"
    assert booked.call_date == start
    assert booked.campaign_status == "Pre-Call Prep"
    assert booked.booking_uid == "bkA"
    cancel = parse_webhook(webhook_cancelled("bkA", start, at=T0 + H), received_at=T0)
    state = fold_booking_events([cancel], state)  # type: ignore[list-item]
    (cancelled,) = contact_booking_updates(state, ["jane@example.com"])
    assert cancelled.booking_status == "Not Booked"
    assert cancelled.call_date is None
    assert cancelled.campaign_status == ""


# -- testing mode: minutes instead of hours -------------------------------------------------


def test_testing_mode_offsets_6_3_1_minutes() -> None:
    sim = Sim(campaign=TESTING)
    start = T0 + 7 * M
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start, step=timedelta(seconds=15))
    assert sim.steps() == ["reminder-1", "reminder-2", "reminder-3"]
    assert [start - s.at for s in sim.outbox] == [6 * M, 3 * M, M]


def test_testing_mode_meeting_under_2_minutes_gets_none() -> None:
    sim = Sim(campaign=TESTING)
    start = T0 + M + timedelta(seconds=59)
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start, step=timedelta(seconds=15))
    assert sim.outbox == []
    assert sorted(sim.skips()) == [(1, TOO_CLOSE), (2, TOO_CLOSE), (3, TOO_CLOSE)]


def test_testing_mode_meeting_exactly_2_minutes_away_gets_the_last() -> None:
    sim = Sim(campaign=TESTING)
    start = T0 + 2 * M
    sim.webhook(webhook_created("bkA", start, at=T0))
    sim.travel(T0, start, step=timedelta(seconds=15))
    assert sim.steps() == ["reminder-3"]


def test_skip_action_is_not_final_but_exit_is() -> None:
    log = pd.DataFrame(
        [
            {"booking_uid": "b", "step_number": 1, "status": "skipped", "reason": "paused"},
            {"booking_uid": "b", "step_number": 2, "status": "skipped", "reason": SUPERSEDED},
            {"booking_uid": "b", "step_number": 3, "status": "sent", "reason": ""},
            {
                "booking_uid": "b",
                "step_number": 1,
                "status": "skipped",
                "reason": BOOKING_CANCELLED,
            },
        ]
    )
    kept = settled_reminders(log)
    assert list(kept["step_number"]) == [2, 3]
    assert SKIP != EXIT
