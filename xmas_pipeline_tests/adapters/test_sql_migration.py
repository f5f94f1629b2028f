"""A store an older release created is brought up to date by `prepare`, on both engines:
a column added since (the reader's time zone) appears, one kept shorter then (the business
name, VARCHAR(200)) is widened, and what was stored stays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import metadata
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline_tests.support.store_contract import event
from xmas_pipeline_tests.support.stores import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with postgres_database() as url:
        yield url


def _older_release(url: str) -> None:
    """Today's schema as the previous release made it."""
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        columns = []
        for column in table.columns:
            if table.name == "sequences" and column.name == "time_zone":
                continue  # not there yet
            copy = column._copy()
            if table.name == "sequences" and column.name == "business_name":
                copy.type = sa.String(200)
            columns.append(copy)
        sa.Table(table.name, old, *columns)
    engine = sa.create_engine(url)
    old.create_all(engine)
    when = datetime(2025, 12, 1, 10, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            old.tables["sequences"].insert(),
            {
                "campaign": "christmas-2025",
                "contact_key": "old@x.com",
                "email": "old@x.com",
                "business_name": "Old Co",
                "segment": "URGENT",
                "signup_at": when,
                "signup_day": "2025-12-01",
                "updated_at": when,
            },
        )
    engine.dispose()


def test_prepare_brings_an_older_store_up_to_date(empty_url: str, campaign: Campaign) -> None:
    _older_release(empty_url)
    store = SqlStore(empty_url)
    store.prepare(campaign)
    columns = {c["name"]: c["type"] for c in sa.inspect(store.engine).get_columns("sequences")}
    assert "time_zone" in columns
    if store.engine.dialect.name == "postgresql":
        assert isinstance(columns["business_name"], sa.Text)
    long_name = ("Plumbing & Heating " * 30).strip()  # 569 characters: over the old limit
    store.upsert_signups(
        campaign, [event("new@x.com", business_name=long_name, timezone="Europe/Paris")]
    )
    frame = store.load_sequences(campaign).set_index("contact_key")
    assert frame.loc["new@x.com", "business_name"] == long_name
    assert frame.loc["new@x.com", "time_zone"] == "Europe/Paris"
    assert frame.loc["old@x.com", "business_name"] == "Old Co"
    SqlStore(empty_url).prepare(campaign)  # and again: nothing left to do, no error
    store.dispose()
