"""The Notion sync queue on both engines: every store write that changes what Notion shows
queues its contact in the same transaction, one row per contact however many changes;
a row is settled only at the version that was synced; taken rows are one sync's each."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import OutcomeRecord
from xmas_pipeline_tests.support.store_contract import T0, event, sent


def queue_of(store: SqlStore) -> SqlNotionQueue:
    return SqlNotionQueue(store.url, engine=store.engine)


def queued(store: SqlStore, campaign: Campaign) -> dict[str, int]:
    entries = queue_of(store).take(campaign, "peek", 10_000)
    queue_of(store).give_back(campaign, entries)
    return {e.contact_key: e.version for e in entries}


def test_every_change_notion_shows_queues_its_contact(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com"), event("b@x.com")])
    assert queued(sql_store, campaign) == {"a@x.com": 1, "b@x.com": 1}
    sql_store.upsert_signups(campaign, [event("a@x.com")])  # a re-delivery: no change
    assert queued(sql_store, campaign) == {"a@x.com": 1, "b@x.com": 1}

    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 1))
    sql_store.record_outcome(
        campaign,
        OutcomeRecord(
            message_id="christmas-2025/b@x.com/email-1",
            contact_key="b@x.com",
            kind="nurture",
            step_id="email-1",
            step_number=1,
            due_at=T0,
            status="skipped",  # a skip is not shown in Notion: nothing queued
            reason="paused",
            at=T0,
        ),
    )
    assert queued(sql_store, campaign) == {"a@x.com": 2, "b@x.com": 1}
    sql_store.record_exit(campaign, "b@x.com", "booked")
    sql_store.set_contact_flags(campaign, "a@x.com", paused=True)
    sql_store.set_contact_flags(campaign, "c@x.com", "c@x.com", unsubscribed=True)
    assert queued(sql_store, campaign) == {"a@x.com": 3, "b@x.com": 2, "c@x.com": 1}

    booking = BookingEvent.model_validate(
        {
            "uid": "bk-1",
            "kind": "created",
            "contact_key": "d@x.com",
            "email": "d@x.com",
            "name": "D",
            "start": T0 + timedelta(days=3),
            "end": T0 + timedelta(days=3, minutes=30),
            "event_at": T0,
            "source": "webhook",
        }
    )
    sql_store.upsert_booking_events(campaign, [booking])
    assert queued(sql_store, campaign)["d@x.com"] == 1


def test_a_row_is_settled_only_at_the_version_that_was_synced(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com"), event("b@x.com")])
    queue = queue_of(sql_store)
    taken = queue.take(campaign, "sync-1")
    assert [e.contact_key for e in taken] == ["a@x.com", "b@x.com"]
    assert queue.take(campaign, "sync-2") == []  # held by sync-1
    read_at = datetime.now(UTC)
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 1))  # changed while syncing
    assert queue.settle(campaign, taken, read_at) == 1
    [again] = queue.take(campaign, "sync-2")
    assert again.contact_key == "a@x.com" and again.version == 2
    assert again.queued_at == read_at  # its age counts from the read it missed
    assert queue.settle(campaign, [again], datetime.now(UTC)) == 1
    assert queue.stats(campaign).depth == 0


def test_errors_wait_to_be_retried_and_show_in_the_stats(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com")])
    queue = queue_of(sql_store)
    [entry] = queue.take(campaign, "sync-1")
    queue.retry_later(campaign, entry, "HTTP 400: Email is not a property", timedelta(minutes=5))
    stats = queue.stats(campaign)
    assert (stats.depth, stats.ready, stats.failing) == (1, 0, 1)
    assert stats.errors == [("a@x.com", 1, "HTTP 400: Email is not a property")]
    assert queue.take(campaign, "sync-2") == []
    # A new change makes it worth trying again at once.
    sql_store.set_contact_flags(campaign, "a@x.com", paused=True)
    [retried] = queue.take(campaign, "sync-2")
    assert retried.attempts == 1 and retried.version == 2


def test_rows_of_a_dead_sync_are_freed(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com"), event("b@x.com")])
    queue = queue_of(sql_store)
    queue.take(campaign, "run-alive", 1)
    queue.take(campaign, "run-dead", 1)
    assert queue.stats(campaign).ready == 0
    assert queue.release(campaign, lambda holder: holder == "run-alive") == 1
    [free] = queue.take(campaign, "run-new")
    assert free.contact_key == "b@x.com"


def test_two_syncs_taking_at_once_never_share_a_contact(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.upsert_signups(campaign, [event(f"p{i:03d}@x.com") for i in range(300)])
    barrier = threading.Barrier(2)
    taken: dict[str, list[str]] = {}

    def take(name: str) -> None:
        queue = queue_of(sql_store)
        barrier.wait()
        mine: list[str] = []
        while batch := queue.take(campaign, name, 37):
            mine += [e.contact_key for e in batch]
        taken[name] = mine

    threads = [threading.Thread(target=take, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(taken["a"]) & set(taken["b"])
    assert len(taken["a"]) + len(taken["b"]) == 300
