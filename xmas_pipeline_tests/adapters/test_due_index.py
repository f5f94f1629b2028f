"""What a send reads tracks what is due (`sequences.next_due_at`, `adapters.sql.due_state`):
the bound moves with each nurture email sent, a sequence with nothing due is not read, and
a plan made from the index is the plan made from everything, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import sequences
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.send_plan import plan_due
from xmas_pipeline.services.planning import due_plan, due_plans, load_state
from xmas_pipeline_tests.support.store_contract import T0, event, sent


def next_due(store: SqlStore, campaign: Campaign, key: str) -> pd.Timestamp | None:
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.select(sequences.c.next_due_at).where(
                sequences.c.campaign == campaign.slug, sequences.c.contact_key == key
            )
        ).scalar()
    return None if value is None else pd.Timestamp(value).tz_localize(None)


def booking(key: str, uid: str, start_in: timedelta) -> BookingEvent:
    return BookingEvent(
        uid=uid,
        kind="created",
        contact_key=key,
        email=key,
        name="Jane",
        start=T0 + start_in,
        end=T0 + start_in + timedelta(minutes=30),
        event_at=T0,
        booked_at=T0,
    )


def test_the_bound_moves_with_each_nurture_email(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com")])
    naive = T0.replace(tzinfo=None)
    assert next_due(sql_store, campaign, "a@x.com") == pd.Timestamp(naive)
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 1))
    assert next_due(sql_store, campaign, "a@x.com") == pd.Timestamp(naive + timedelta(hours=24))
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 2))
    assert next_due(sql_store, campaign, "a@x.com") == pd.Timestamp(naive + timedelta(hours=72))
    # A step re-sent out of order (a forced backfill) never moves it past an unsent step.
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 4))
    assert next_due(sql_store, campaign, "a@x.com") == pd.Timestamp(naive + timedelta(hours=72))


def test_a_plan_reads_only_what_may_be_due(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [event(f"{n}@x.com") for n in "abcd"])
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 1))  # next: email 2 at T0+24h
    sql_store.record_exit(campaign, "c@x.com", "unsubscribed")  # stopped for good
    for d in ("b@x.com", "d@x.com"):
        sql_store.record_sent(campaign, sent(campaign, d, 1))
    with sql_store.engine.begin() as conn:  # as an older release or `notion import` left it
        conn.execute(
            sequences.update().where(sequences.c.contact_key == "d@x.com").values(next_due_at=None)
        )
    # b's bound is T0+24h now; d's stays unknown, so d is always read.

    def read(at: timedelta, horizon: timedelta = timedelta(0)) -> set[str]:
        state = sql_store.load_due_states([campaign], T0 + at, horizon)[campaign.slug]
        return set(state.sequences["contact_key"])

    assert read(timedelta(hours=1)) == {"d@x.com"}
    assert read(timedelta(hours=25)) == {"a@x.com", "b@x.com", "d@x.com"}
    assert read(timedelta(hours=1), horizon=timedelta(days=7)) == {"a@x.com", "b@x.com", "d@x.com"}
    # Someone with an active booking is read whatever their sequence says: their flags
    # decide the reminders.
    sql_store.upsert_booking_events(campaign, [booking("c@x.com", "bk-c", timedelta(days=2))])
    assert read(timedelta(hours=1)) == {"c@x.com", "d@x.com"}


def _population(store: SqlStore, campaigns: list[Campaign], seed: int) -> None:
    rng = random.Random(seed)
    for campaign in campaigns:
        people = [f"p{n:03}@x.com" for n in range(30)]
        store.upsert_signups(
            campaign,
            [event(p, T0 + timedelta(hours=rng.randrange(0, 200))) for p in people],
        )
        frame = store.load_sequences(campaign).set_index("contact_key")
        for person in people:
            signup = frame.loc[person, "signup_at"].to_pydatetime()
            for step in campaign.steps[: rng.randrange(0, len(campaign.steps) + 1)]:
                store.record_sent(
                    campaign, sent(campaign, person, step.number, signup + step.delay)
                )
            roll = rng.random()
            if roll < 0.1:
                store.record_exit(campaign, person, "booked")
            elif roll < 0.2:
                store.set_flags(campaign, person, unsubscribed=True)
            elif roll < 0.3:
                store.set_flags(campaign, person, paused=True)
            elif roll < 0.4:
                store.set_contact_flags(campaign, person, person, delivery_state="bounced")
            if rng.random() < 0.15:
                start = timedelta(hours=rng.randrange(20, 400))
                store.upsert_booking_events(campaign, [booking(person, f"bk-{person}", start)])


def _sorted(plan: pd.DataFrame) -> pd.DataFrame:
    return plan.sort_values(["message_id"]).reset_index(drop=True)


def test_plans_from_the_index_are_the_plans_from_everything(
    sql_store: SqlStore, campaign: Campaign, testing_campaign: Campaign
) -> None:
    other = testing_campaign.model_copy(update={"slug": "spring-2026", "name": "Spring 2026"})
    campaigns = [campaign, other]
    # The rules that span campaigns hold in both: the gap across them, one suppression list.
    running = {c.slug: c for c in campaigns}
    _population(sql_store, campaigns, seed=7)
    checked = 0
    for hours in range(0, 700, 59):
        now = T0 + timedelta(hours=hours, minutes=17)
        together = due_plans(sql_store, campaigns, now, running)
        for c in campaigns:
            everything, _ = _from_everything(sql_store, c, now, running)
            pd.testing.assert_frame_equal(_sorted(together[c.slug][0]), _sorted(everything))
            pd.testing.assert_frame_equal(
                _sorted(due_plan(sql_store, c, now, running)[0]), _sorted(everything)
            )
            checked += len(everything)
    assert checked > 20  # the plans compared were not all empty


def _from_everything(
    store: SqlStore, campaign: Campaign, now: datetime, running: dict[str, Campaign]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return plan_due(load_state(store, campaign, running), campaign, now)


def _flags_by_campaign(store: SqlStore, campaigns: list[Campaign], keys: list[str]) -> None:
    together = store.contact_flags_of([c.slug for c in campaigns], keys)
    assert list(dict.fromkeys(together["campaign"])) == [
        c.slug for c in campaigns if (together["campaign"] == c.slug).any()
    ]
    for c in campaigns:
        mine = together[together["campaign"] == c.slug].drop(columns="campaign")
        alone = store.load_contact_flags(c, keys)
        pd.testing.assert_frame_equal(
            mine.sort_values("contact_key").reset_index(drop=True),
            alone.sort_values("contact_key").reset_index(drop=True),
        )


def test_the_flags_of_several_campaigns_read_together_are_each_ones_own(
    sql_store: SqlStore, campaign: Campaign, testing_campaign: Campaign
) -> None:
    other = testing_campaign.model_copy(update={"slug": "spring-2026", "name": "Spring 2026"})
    campaigns = [campaign, other]
    people = [f"{n}@x.com" for n in "abcdef"]
    for c in campaigns:
        sql_store.upsert_signups(c, [event(p) for p in people])
        sql_store.set_contact_flags(c, "a@x.com", "a@x.com", paused=True)
    sql_store.set_contact_flags(other, "z@x.com", "z@x.com", paused=True)  # no sequence
    # Nothing recorded that spans campaigns: each campaign's own rows.
    _flags_by_campaign(sql_store, campaigns, [*people, "z@x.com"])
    # An unsubscribe and a bounce in one campaign hold in both.
    sql_store.set_contact_flags(campaign, "b@x.com", "b@x.com", unsubscribed=True)
    sql_store.set_contact_flags(other, "c@x.com", "c@x.com", delivery_state="bounced")
    _flags_by_campaign(sql_store, campaigns, [*people, "z@x.com"])
    flags = sql_store.contact_flags_of([c.slug for c in campaigns], people)
    assert set(flags.loc[flags["unsubscribed"], "contact_key"]) == {"b@x.com"}
