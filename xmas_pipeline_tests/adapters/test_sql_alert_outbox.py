"""The alert outbox in the SQL store, on SQLite and PostgreSQL: one row per key however
often it is enqueued, a lease so two deliverers never take one alert, retries with the
error, delivered alerts never due again; and a store an older release left, whose ledger
of alerts already sent is honoured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.alerts import SqlAlertOutbox
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import metadata
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import Alert, AlertOutbox
from xmas_pipeline_tests.support.stores import postgres_database

LEASE = timedelta(minutes=2)


def ops(key: str) -> Alert:
    return Alert(key=key, kind="ops", title=f"about {key}", lines=("one", "two"))


@pytest.fixture
def outbox(sql_store: SqlStore, campaign: Campaign) -> SqlAlertOutbox:
    return SqlAlertOutbox(sql_store.url, campaign, engine=sql_store.engine)


def test_it_is_the_port(outbox: SqlAlertOutbox) -> None:
    assert isinstance(outbox, AlertOutbox)


def test_an_alert_is_enqueued_once_per_key(outbox: SqlAlertOutbox) -> None:
    assert outbox.enqueue([ops("a"), ops("b"), ops("a")]) == ["a", "b"]
    assert outbox.enqueue([ops("a"), ops("c")]) == ["c"]
    assert outbox.known(["a", "b", "c", "d"]) == {"a", "b", "c"}
    assert outbox.waiting() == 3
    [taken] = outbox.take(datetime.now(UTC), LEASE, keys=["b"])
    assert (taken.key, taken.kind, taken.title, taken.lines) == (
        "b",
        "ops",
        "about b",
        ("one", "two"),
    )


def test_a_taken_alert_is_leased_and_a_delivered_one_never_comes_back(
    outbox: SqlAlertOutbox,
) -> None:
    outbox.enqueue([ops("a"), ops("b")])
    now = datetime.now(UTC)
    first = outbox.take(now, LEASE, limit=1)
    assert [a.key for a in first] == ["a"]  # oldest first (then by key)
    # A second deliverer meanwhile gets only what is left.
    assert [a.key for a in outbox.take(now, LEASE)] == ["b"]
    assert outbox.take(now, LEASE) == []
    # The taker of "a" died before saying anything: once its lease ran out, "a" is due again.
    assert [a.key for a in outbox.take(now + LEASE + timedelta(seconds=1), LEASE)] == ["a", "b"]
    outbox.delivered(first[0])
    assert outbox.waiting() == 1
    far = now + timedelta(days=1)
    assert [a.key for a in outbox.take(far, LEASE)] == ["b"]
    outbox.enqueue([ops("a")])  # enqueued again after delivery: still delivered
    assert outbox.take(far + timedelta(days=1), LEASE, keys=["a"]) == []


def test_a_refused_alert_keeps_its_error_and_waits_its_turn(outbox: SqlAlertOutbox) -> None:
    outbox.enqueue([ops("a")])
    [alert] = outbox.take(datetime.now(UTC), LEASE)
    outbox.retry_later(alert, "alert webhook answered 429, retry after 30s", timedelta(seconds=30))
    assert outbox.take(datetime.now(UTC) + timedelta(seconds=20), LEASE) == []
    [again] = outbox.take(datetime.now(UTC) + timedelta(seconds=31), LEASE)
    assert again.attempts == 1 and "429" in again.last_error
    outbox.delivered(again)
    [row] = outbox.history()
    assert row["delivered_at"] is not None and row["last_error"] == "" and row["attempts"] == 1


def test_noted_keys_are_known_and_written_with_the_alert(outbox: SqlAlertOutbox) -> None:
    outbox.enqueue([ops("stuck-alert:1")], noted=["stuck:m1", "stuck:m2"])
    assert outbox.known(["stuck:m1", "stuck:m2", "stuck:m3"]) == {"stuck:m1", "stuck:m2"}
    assert outbox.waiting() == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with postgres_database() as url:
        yield url


def test_an_older_store_s_ledger_means_sent(empty_url: str, campaign: Campaign) -> None:
    """The previous release had no outbox: it posted, then wrote the key to `alerts_sent`.
    `prepare` adds the outbox; an alert whose key that ledger holds is recorded as
    delivered, never posted again."""
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        if table.name != "alert_outbox":
            sa.Table(table.name, old, *(column._copy() for column in table.columns))
    engine = sa.create_engine(empty_url)
    old.create_all(engine)
    sent_at = datetime(2025, 12, 1, 9, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            old.tables["alerts_sent"].insert(),
            [
                {"campaign": campaign.slug, "alert_key": "critical:ann@x.com", "sent_at": sent_at},
                {"campaign": "another", "alert_key": "critical:bob@x.com", "sent_at": sent_at},
            ],
        )
    engine.dispose()
    outbox = SqlAlertOutbox(empty_url, campaign)
    try:
        added = outbox.enqueue([ops("critical:ann@x.com"), ops("critical:bob@x.com")])
        assert added == ["critical:bob@x.com"]  # Bob was announced for another campaign only
        due = outbox.take(datetime.now(UTC) + timedelta(days=1), LEASE)
        assert [a.key for a in due] == ["critical:bob@x.com"]
        history = {row["alert_key"]: row for row in outbox.history()}
        assert history["critical:ann@x.com"]["delivered_at"] == sent_at
    finally:
        outbox.dispose()
