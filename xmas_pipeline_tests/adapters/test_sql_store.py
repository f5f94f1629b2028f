"""The SQL store on SQLite and PostgreSQL: the store contract plus SQL specifics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from threading import Thread

import pytest

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import OutcomeRecord
from xmas_pipeline_tests.support.store_contract import CONTRACT, T0, event, sent


@pytest.mark.parametrize("check", CONTRACT, ids=lambda f: f.__name__.removeprefix("check_"))
def test_store_contract(
    sql_store: SqlStore, campaign: Campaign, check: Callable[[SqlStore, Campaign], None]
) -> None:
    check(sql_store, campaign)


def test_schema_created_on_first_use(tmp_path, campaign: Campaign) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert store.load_sequences(campaign).empty
    store.dispose()


def test_campaigns_are_kept_apart(sql_store: SqlStore, campaign: Campaign) -> None:
    other = campaign.model_copy(update={"slug": "spring-2026", "name": "Spring 2026"})
    sql_store.upsert_signups(campaign, [event("a@x.com")])
    assert sql_store.load_sequences(other).empty


def test_failures_clear_once_sent(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com")])
    failure = OutcomeRecord(
        message_id=f"{campaign.slug}/a@x.com/email-1",
        contact_key="a@x.com",
        kind="nurture",
        step_id="email-1",
        step_number=1,
        due_at=T0,
        status="failed",
        reason="timeout",
        at=T0,
    )
    sql_store.record_outcome(campaign, failure)
    sql_store.record_outcome(campaign, failure)
    outcomes = sql_store.outcomes(campaign)
    assert outcomes["attempts"].tolist() == [2]
    sql_store.record_sent(campaign, sent(campaign, "a@x.com", 1))
    assert sql_store.outcomes(campaign).empty


def test_flags(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [event("a@x.com")])
    assert sql_store.set_flags(campaign, "a@x.com", paused=True, delivery_state="bounced")
    assert not sql_store.set_flags(campaign, "nobody@x.com", paused=True)
    row = sql_store.load_sequences(campaign).iloc[0]
    assert row["paused"] and row["delivery_state"] == "bounced"
    with pytest.raises(ValueError):
        sql_store.set_flags(campaign, "a@x.com", email="evil@x.com")


def test_concurrent_upserts_create_one_sequence(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.prepare(campaign)
    errors: list[BaseException] = []
    created: list[str] = []

    def upsert(offset: int) -> None:
        try:
            created.extend(
                sql_store.upsert_signups(
                    campaign, [event("race@x.com", at=T0 + timedelta(seconds=offset))]
                ).created
            )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [Thread(target=upsert, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(sql_store.load_sequences(campaign)) == 1
    assert created == ["race@x.com"]  # reported created once, whoever won


def _prepare(url: str) -> None:
    SqlStore(url).prepare()


def test_runs_starting_together_on_a_fresh_sqlite_file(tmp_path) -> None:
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_prepare, args=(url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
