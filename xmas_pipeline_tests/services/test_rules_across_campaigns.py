"""The rules that span campaigns, through the plan and the gate of a send run
(`services.planning`) and the booking's campaign at ingestion
(`services.booking_campaigns`): two campaigns (the two shipped folders, testing mode) in
one store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import parse_webhook
from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR, Campaign
from xmas_pipeline.core.campaign_folders import load_campaign_folder
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.exit_rules import EXIT, SKIP
from xmas_pipeline.core.send_gate import MIN_GAP
from xmas_pipeline.services.booking_campaigns import assign_booking_campaigns
from xmas_pipeline.services.email_events import apply_email_events
from xmas_pipeline.services.planning import due_plan, send_gate
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.clock import MovableClock
from xmas_pipeline_tests.support.store_contract import event as signup
from xmas_pipeline_tests.support.store_contract import sent

JANE, BOB = "jane@example.com", "bob@example.com"
MINUTE = timedelta(minutes=1)


def folder(slug: str) -> Campaign:
    return load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / slug, testing_mode=True)


@pytest.fixture
def a() -> Campaign:
    return folder("christmas-2025")


@pytest.fixture
def b() -> Campaign:
    return folder("christmas-2026")


def now() -> datetime:
    return datetime.now(UTC)


def rows_of(plan: pd.DataFrame, key: str) -> list[dict]:
    return plan.loc[plan["contact_key"] == key].to_dict("records")


def decisions(plan: pd.DataFrame, key: str) -> list[tuple[str, str, str]]:
    return [(r["step_id"], r["action"], r["reason"]) for r in rows_of(plan, key)]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("unsubscribed", "unsubscribed"), ("bounced", "bounced"), ("complained", "complained")],
)
def test_stopped_in_one_campaign_is_stopped_in_the_other(
    sql_store: SqlStore, a: Campaign, b: Campaign, clock: MovableClock, kind: str, reason: str
) -> None:
    sql_store.upsert_signups(a, [signup(JANE, now()), signup(BOB, now())])
    sql_store.upsert_signups(b, [signup(JANE, now()), signup(BOB, now())])
    plan_b, _ = due_plan(sql_store, b, now())
    assert decisions(plan_b, JANE) == [("email-1", "send", "")]
    gate_b = send_gate(sql_store, b, None)
    welcome = rows_of(plan_b, JANE)
    assert gate_b(welcome).stopped == {}

    clock.advance(5)
    apply_email_events(
        sql_store, a, [DeliveryEvent(kind=kind, contact_key=JANE, email=JANE, at=now())]
    )
    # The batch planned before the event is refused at the moment of sending...
    assert gate_b(welcome).stopped == {welcome[0]["message_id"]: (EXIT, reason)}
    # ...and the next plan ends B's sequence for the same reason; Bob is untouched.
    plan_b, _ = due_plan(sql_store, b, now())
    assert decisions(plan_b, JANE) == [("email-1", EXIT, reason)]
    assert decisions(plan_b, BOB) == [("email-1", "send", "")]


def test_the_gap_between_nurture_emails_holds_across_campaigns(
    sql_store: SqlStore, a: Campaign, b: Campaign, clock: MovableClock
) -> None:
    b = b.model_copy(update={"min_gap": 10 * MINUTE})
    campaigns = {a.slug: a, b.slug: b}
    # Jane: in B for 20 minutes, B's welcome long sent; A sent her a nurture email a
    # minute ago. Bob: A emailed him a minute ago, and he has just signed up to B.
    sql_store.upsert_signups(a, [signup(JANE, now() - 30 * MINUTE), signup(BOB, now())])
    sql_store.upsert_signups(b, [signup(JANE, now() - 20 * MINUTE)])
    sql_store.record_sent(b, sent(b, JANE, 1, now() - 20 * MINUTE))
    sql_store.record_sent(a, sent(a, JANE, 3, now() - MINUTE))
    sql_store.record_sent(a, sent(a, BOB, 1, now() - MINUTE))
    sql_store.upsert_signups(b, [signup(BOB, now())])

    alone, _ = due_plan(sql_store, b, now())  # without the other campaigns: today's rule
    assert decisions(alone, JANE) == [("email-2", "send", "")]
    plan, _ = due_plan(sql_store, b, now(), campaigns)
    assert decisions(plan, JANE) == []
    assert decisions(plan, BOB) == [("email-1", "send", "")]  # the welcome goes at once
    # A batch planned before A's email went is held at the gate, for later.
    gate = send_gate(sql_store, b, None, campaigns=campaigns)
    late = rows_of(alone, JANE)
    assert gate(late).stopped == {late[0]["message_id"]: (SKIP, MIN_GAP)}
    assert gate(rows_of(plan, BOB)).stopped == {}

    clock.advance(9 * 60 + 5)  # B's ten minutes since A's email
    plan, _ = due_plan(sql_store, b, now(), campaigns)
    assert decisions(plan, JANE) == [("email-2", "send", "")]
    assert gate(rows_of(plan, JANE)).stopped == {}


def test_the_longer_gap_is_the_other_campaigns(
    sql_store: SqlStore, a: Campaign, b: Campaign, clock: MovableClock
) -> None:
    # B's own gap is nothing (the testing preset); A's is 10 minutes and A just emailed.
    a = a.model_copy(update={"min_gap": 10 * MINUTE})
    campaigns = {a.slug: a, b.slug: b}
    sql_store.upsert_signups(a, [signup(JANE, now() - 30 * MINUTE)])
    sql_store.upsert_signups(b, [signup(JANE, now() - 20 * MINUTE)])
    sql_store.record_sent(b, sent(b, JANE, 1, now() - 20 * MINUTE))
    sql_store.record_sent(a, sent(a, JANE, 2, now() - 2 * MINUTE))
    assert decisions(due_plan(sql_store, b, now(), campaigns)[0], JANE) == []
    clock.advance(8 * 60 + 5)
    assert decisions(due_plan(sql_store, b, now(), campaigns)[0], JANE) == [("email-2", "send", "")]


def booked(uid: str, start: datetime, campaign: str = "", email: str = JANE):
    body = webhook_created(uid, start, at=now(), email=email)
    if campaign:
        body["payload"]["metadata"]["campaign"] = campaign
    event = parse_webhook(body, received_at=now())
    assert event is not None
    return event


def test_a_booking_belongs_to_one_campaign_which_alone_reminds(
    sql_store: SqlStore, a: Campaign, b: Campaign, clock: MovableClock
) -> None:
    campaigns = {a.slug: a, b.slug: b}
    # Jane signed up to A, then to B; the booking came through A's link. Bob signed up to
    # B only and booked through a link without the tag; Carl never signed up.
    sql_store.upsert_signups(a, [signup(JANE, now() - 20 * MINUTE)])
    sql_store.upsert_signups(b, [signup(JANE, now() - 10 * MINUTE), signup(BOB, now())])
    start = now() + 5 * MINUTE
    events = [
        booked("bkJane", start, campaign=a.slug),
        booked("bkBob", start, email=BOB),
        booked("bkCarl", start, email="carl@example.com"),
    ]
    by_campaign = assign_booking_campaigns(events, sql_store, campaigns, default=a.slug)
    assert {slug: [e.uid for e in evs] for slug, evs in by_campaign.items()} == {
        a.slug: ["bkJane", "bkCarl"],
        b.slug: ["bkBob"],
    }
    for slug, evs in by_campaign.items():
        sql_store.upsert_booking_events(campaigns[slug], evs)
    # Redelivered later, the booking stays where it is, whatever the link said.
    again = assign_booking_campaigns([booked("bkBob", start, a.slug)], sql_store, campaigns, a.slug)
    assert list(again) == [b.slug]

    clock.advance(2 * 60 + 5)  # the 3-minute reminder is due
    reminders = {
        c.slug: sorted(
            (r["contact_key"], r["step_id"])
            for r in due_plan(sql_store, c, now())[0].to_dict("records")
            if r["kind"] == "reminder" and r["action"] == "send"
        )
        for c in (a, b)
    }
    assert reminders == {
        a.slug: [("carl@example.com", "reminder-2"), (JANE, "reminder-2")],
        b.slug: [(BOB, "reminder-2")],
    }


def test_a_booking_in_one_campaign_stops_the_others_nurture_where_its_file_says_so(
    sql_store: SqlStore, a: Campaign, b: Campaign, clock: MovableClock
) -> None:
    sql_store.upsert_signups(a, [signup(JANE, now() - 20 * MINUTE)])
    sql_store.upsert_signups(b, [signup(JANE, now() - 20 * MINUTE)])
    sql_store.record_sent(b, sent(b, JANE, 1, now() - 20 * MINUTE))
    sql_store.upsert_booking_events(a, [booked("bkJane", now() + 3 * 24 * 60 * MINUTE)])

    plan, _ = due_plan(sql_store, b, now())
    assert decisions(plan, JANE) == [("email-2", EXIT, "booked")]
    gate = send_gate(sql_store, b, None)
    row = {
        "message_id": f"{b.slug}/{JANE}/email-2",
        "contact_key": JANE,
        "kind": "nurture",
        "step_number": 2,
    }
    assert gate([row]).stopped == {row["message_id"]: (EXIT, "booked")}

    keeps_going = b.model_copy(
        update={"exit": b.exit.model_copy(update={"stop_nurture_on_booking": False})}
    )
    plan, _ = due_plan(sql_store, keeps_going, now())
    assert decisions(plan, JANE) == [("email-2", "send", "")]
    assert send_gate(sql_store, keeps_going, None)([row]).stopped == {}
