"""Forgetting a person in the SQL store (SQLite and PostgreSQL): every row holding the
address goes, look-alike addresses stay, and only a salted hash remains."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import (
    alerts_sent,
    forgotten,
    metadata,
    secrets,
    send_claims,
    send_journal,
)
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.services.planning import send_gate
from xmas_pipeline_tests.support.store_contract import event, sent

GONE = "jane@x.com"
LOOK_ALIKES = ["ajane@x.com", "jane@x.community"]


def rows_holding(store: SqlStore, text: str) -> dict[str, int]:
    found: dict[str, int] = {}
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                if any(text in str(v).lower() for v in row.values() if v is not None):
                    found[table.name] = found.get(table.name, 0) + 1
    return found


def fill(store: SqlStore, campaign: Campaign) -> None:
    now = datetime.now(UTC)
    people = ["Jane@X.com", *LOOK_ALIKES]
    store.upsert_signups(campaign, [event(p) for p in people])
    for key in [GONE, *LOOK_ALIKES]:
        store.record_sent(campaign, sent(campaign, key, 1))
        store.set_contact_flags(campaign, key, email=key, paused=True)
    batch = {"emails": [{"to": "JANE@x.com"}, {"to": "ajane@x.com"}]}
    with store.engine.begin() as conn:
        conn.execute(
            alerts_sent.insert(),
            [
                {"campaign": campaign.slug, "alert_key": f"critical/{k}", "sent_at": now}
                for k in (GONE, "ajane@x.com")
            ],
        )
        conn.execute(
            send_journal.insert().values(
                entry_id="e1", campaign=campaign.slug, created_at=now, body=json.dumps(batch)
            )
        )
        conn.execute(
            send_claims.insert(),
            [
                {
                    "campaign": campaign.slug,
                    "idempotency_key": f"{campaign.slug}/{k}/email-2",
                    "entry_id": "e1",
                    "claimed_at": now,
                }
                for k in (GONE, "ajane@x.com")
            ],
        )


def test_erase_removes_every_row_holding_the_address_and_only_those(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    fill(sql_store, campaign)
    before = rows_holding(sql_store, GONE)
    assert {"sequences", "messages", "contacts", "alerts_sent", "send_journal"} <= set(before)
    forget = SqlForget(sql_store.url, engine=sql_store.engine)

    removed = forget.erase(GONE)

    assert removed["sequences"] == 1 and removed["messages"] == 1
    assert removed["contacts"] == 1 and removed["alerts_sent"] == 1
    assert removed["send_journal"] == 1 and removed["send_claims"] == 2  # the whole batch
    with sql_store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            texts = [c for c in table.columns if isinstance(c.type, sa.String)]
            for row in conn.execute(sa.select(*texts)) if texts else []:
                assert not any(str(v).lower() == GONE for v in row), table.name
                assert not any(f"/{GONE}/" in str(v).lower() for v in row), table.name
        hashes = [r[0] for r in conn.execute(sa.select(forgotten.c.address_hash))]
        salt = conn.execute(sa.select(secrets.c.value)).scalars().all()
    assert len(hashes) == 1 and len(hashes[0]) == 64 and GONE not in hashes[0]
    assert len(salt) == 1
    kept = sql_store.load_sequences(campaign)
    assert sorted(kept["contact_key"]) == sorted(LOOK_ALIKES)
    assert {"sequences", "messages", "contacts", "alerts_sent"} <= set(
        rows_holding(sql_store, "ajane@x.com")
    )
    assert forget.forgotten_keys(["JANE@x.com".lower(), *LOOK_ALIKES]) == {GONE}
    assert forget.erase(GONE) == {}  # repeatable


def test_a_forgotten_address_reads_unsubscribed_and_the_gate_refuses_it(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    fill(sql_store, campaign)
    forget = SqlForget(sql_store.url, engine=sql_store.engine)
    forget.erase(GONE)
    # Whatever path brings them back (here a signup written past the ingestion's check),
    # the flags read them as unsubscribed and the gate of every batch stops them.
    sql_store.upsert_signups(campaign, [event(GONE)])
    flags = sql_store.load_contact_flags(campaign, [GONE, "ajane@x.com"])
    by_key = flags.set_index("contact_key")["unsubscribed"].to_dict()
    assert by_key == {GONE: True, "ajane@x.com": False}
    everyone = sql_store.load_contact_flags(campaign)
    assert not everyone.set_index("contact_key")["unsubscribed"].any()  # no contact row now
    row = {
        "message_id": f"{campaign.slug}/{GONE}/email-1",
        "contact_key": GONE,
        "kind": "nurture",
        "step_number": 1,
        "step_id": "email-1",
        "booking_uid": "",
        "due_at": pd.Timestamp.now(tz="UTC"),
    }
    decision = send_gate(sql_store, campaign, None)([row])
    assert decision.stopped[row["message_id"]][1] == "unsubscribed"


def test_forgotten_keys_are_found_among_many(sql_store: SqlStore, campaign: Campaign) -> None:
    forget = SqlForget(sql_store.url, engine=sql_store.engine)
    assert forget.forgotten_keys([GONE]) == set()  # nothing forgotten yet: no salt needed
    forget.suppress("last@x.com")
    forget.suppress(GONE)
    many = [f"p{n}@x.com" for n in range(1200)] + ["last@x.com", GONE]
    assert forget.forgotten_keys(many) == {"last@x.com", GONE}
