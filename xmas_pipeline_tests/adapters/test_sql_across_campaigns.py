"""The store's reads across campaigns, with two campaigns in one store, on SQLite and
PostgreSQL (the `sql_store` fixture runs each test on both): the flags merged from every
campaign (`load_contact_flags`), the last nurture email from other campaigns, people's
signups across campaigns, and the campaign a booking is kept under."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent, parse_webhook
from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR, Campaign
from xmas_pipeline.core.campaign_folders import load_campaign_folder
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.services.email_events import apply_email_events
from xmas_pipeline_tests.support.calcom_payloads import webhook_cancelled, webhook_created
from xmas_pipeline_tests.support.store_contract import event as signup
from xmas_pipeline_tests.support.store_contract import sent

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
JANE, BOB = "jane@example.com", "bob@example.com"


@pytest.fixture
def a() -> Campaign:
    return load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / "christmas-2025", testing_mode=True)


@pytest.fixture
def b() -> Campaign:
    return load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / "christmas-2026", testing_mode=True)


@pytest.fixture
def both(sql_store: SqlStore, a: Campaign, b: Campaign) -> SqlStore:
    """Jane and Bob signed up to both campaigns."""
    sql_store.upsert_signups(a, [signup(JANE, T0), signup(BOB, T0)])
    sql_store.upsert_signups(b, [signup(JANE, T0 + H), signup(BOB, T0 + H)])
    return sql_store


CLEAR = {"unsubscribed": False, "delivery_state": "", "booked": False, "paused": False}


def flags_of(store: SqlStore, campaign: Campaign, key: str, keys: bool = True) -> dict:
    """The person's flags as `campaign` reads them (no row: nothing recorded)."""
    frame = store.load_contact_flags(campaign, [key] if keys else None)
    rows = frame.loc[frame["contact_key"] == key]
    assert len(rows) <= 1, frame
    if rows.empty:
        return CLEAR
    row = rows.iloc[0]
    return {
        "unsubscribed": bool(row["unsubscribed"]),
        "delivery_state": row["delivery_state"],
        "booked": bool(row["booked"]),
        "paused": bool(row["paused"]),
    }


@pytest.mark.parametrize("keys", [True, False], ids=["these-keys", "whole-campaign"])
def test_an_unsubscribe_in_one_campaign_reads_everywhere(
    both: SqlStore, a: Campaign, b: Campaign, keys: bool
) -> None:
    unsubscribe = DeliveryEvent(kind="unsubscribed", contact_key=JANE, email=JANE, at=T0 + 2 * H)
    apply_email_events(both, a, [unsubscribe])
    assert flags_of(both, b, JANE, keys) == {**CLEAR, "unsubscribed": True}
    assert flags_of(both, b, BOB, keys) == CLEAR


def test_bounces_and_complaints_read_everywhere_the_strongest_wins(
    both: SqlStore, a: Campaign, b: Campaign
) -> None:
    bounce = DeliveryEvent(kind="bounced", contact_key=JANE, email=JANE, at=T0, provider_id="p1")
    apply_email_events(both, a, [bounce])
    assert flags_of(both, b, JANE)["delivery_state"] == "bounced"
    complaint = DeliveryEvent(kind="complained", contact_key=JANE, email=JANE, at=T0 + H)
    apply_email_events(both, b, [complaint])
    assert flags_of(both, a, JANE)["delivery_state"] == "complained"
    # A soft bounce stops nobody, here or elsewhere.
    soft = DeliveryEvent(kind="soft_bounced", contact_key=BOB, email=BOB, at=T0)
    apply_email_events(both, a, [soft])
    assert flags_of(both, b, BOB) == CLEAR


def test_each_place_a_flag_is_kept_counts(both: SqlStore, a: Campaign, b: Campaign) -> None:
    # Only on A's sequence row.
    assert both.set_flags(a, JANE, unsubscribed=True)
    assert flags_of(both, b, JANE)["unsubscribed"] is True
    # Only as a message event (the flag not written: an event stored by hand, say).
    both.record_delivery_event(
        a, DeliveryEvent(kind="complained", contact_key=BOB, email=BOB, at=T0, provider_id="p2")
    )
    assert flags_of(both, b, BOB)["delivery_state"] == "complained"
    # Only on a contact row of a campaign the person never signed up to.
    carl = "carl@example.com"
    both.set_contact_flags(a, carl, carl, delivery_state="bounced")
    assert flags_of(both, b, carl)["delivery_state"] == "bounced"


def test_a_pause_stays_in_its_campaign(both: SqlStore, a: Campaign, b: Campaign) -> None:
    both.set_contact_flags(a, JANE, JANE, paused=True)
    assert flags_of(both, a, JANE)["paused"] is True
    assert flags_of(both, b, JANE) == CLEAR


def test_an_active_booking_anywhere_reads_booked(both: SqlStore, a: Campaign, b: Campaign) -> None:
    start = T0 + 80 * H
    created = parse_webhook(webhook_created("bkA", start, at=T0, email=JANE), received_at=T0)
    assert created is not None
    both.upsert_booking_events(a, [created])
    assert flags_of(both, b, JANE)["booked"] is True
    assert flags_of(both, b, JANE, keys=False)["booked"] is True
    cancelled = parse_webhook(
        webhook_cancelled("bkA", start, at=T0 + H, email=JANE), received_at=T0 + H
    )
    assert cancelled is not None
    both.upsert_booking_events(a, [cancelled])
    assert flags_of(both, b, JANE)["booked"] is False


def test_a_forgotten_address_reads_unsubscribed_in_every_campaign(
    both: SqlStore, a: Campaign, b: Campaign
) -> None:
    SqlForget(both.url, engine=both.engine).suppress(JANE)
    for campaign in (a, b):
        assert flags_of(both, campaign, JANE)["unsubscribed"] is True
        assert flags_of(both, campaign, BOB)["unsubscribed"] is False


def test_the_last_nurture_email_from_other_campaigns(
    both: SqlStore, a: Campaign, b: Campaign
) -> None:
    both.record_sent(a, sent(a, JANE, 1, T0))
    both.record_sent(a, sent(a, JANE, 2, T0 + H))
    both.record_sent(b, sent(b, JANE, 1, T0 + 2 * H))  # B's own: never "elsewhere" for B
    reminder = replace(
        sent(a, BOB, 1, T0 + 3 * H), kind="reminder", message_id="r", idempotency_key="r"
    )
    both.record_sent(a, reminder)
    frame = both.last_nurture_elsewhere(b)
    assert frame[["contact_key", "campaign"]].values.tolist() == [[JANE, a.slug]]
    assert frame.loc[0, "sent_at"] == T0 + H + timedelta(seconds=5)
    assert both.last_nurture_elsewhere(b, [BOB]).empty  # reminders are not nurture
    mirrored = both.last_nurture_elsewhere(a, [JANE])
    assert mirrored[["campaign", "sent_at"]].values.tolist() == [
        [b.slug, pd.Timestamp(T0 + 2 * H + timedelta(seconds=5))]
    ]


def test_signups_across_campaigns_and_where_bookings_are_kept(
    both: SqlStore, a: Campaign, b: Campaign
) -> None:
    frame = both.signups_across_campaigns([JANE, "nobody@example.com"])
    got = sorted(zip(frame["campaign"], frame["signup_at"], strict=True))
    assert got == [(a.slug, T0), (b.slug, T0 + H)]
    assert both.signups_across_campaigns([]).empty

    event = parse_webhook(webhook_created("bkB", T0 + 80 * H, at=T0, email=JANE), received_at=T0)
    assert isinstance(event, BookingEvent)
    both.upsert_booking_events(b, [event])
    assert both.booking_campaigns(["bkB", "bkZ", ""]) == {"bkB": b.slug}
    assert both.booking_campaigns([]) == {}


def test_an_older_store_gets_the_indexes_these_reads_use(sql_store: SqlStore) -> None:
    sql_store.prepare()
    with sql_store.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_message_events_contact_key"))
    assert "ix_message_events_contact_key" not in index_names(sql_store, "message_events")
    again = SqlStore(sql_store.url)
    try:
        again.prepare()
        for table in ("sequences", "contacts", "message_events"):
            assert f"ix_{table}_contact_key" in index_names(again, table)
        assert "ix_bookings_booking_uid" in index_names(again, "bookings")
    finally:
        again.dispose()


def index_names(store: SqlStore, table: str) -> set[str]:
    return {index["name"] for index in sa.inspect(store.engine).get_indexes(table)}
