"""The send journal and its claims in the SQL store (`core.ports.SendJournal`).

`begin` does, in one transaction: claim each message's idempotency key (a key another
open batch holds is not taken), drop the keys already recorded as sent, and write the
batch with what is left. A competitor's batch is settled in the opposite order (statuses
written, then its claims freed in `finish`), so a key this run manages to claim is either
unsent or visibly sent by the time it is checked: no message ends up in two batches.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.tables import messages, send_claims, send_journal
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import DUE_COLUMNS
from xmas_pipeline.core.ports import (
    ALREADY_SENT,
    IN_FLIGHT_ELSEWHERE,
    Chunk,
    Claim,
    JournalEntry,
    OutgoingEmail,
)

DEADLOCK_ATTEMPTS = 3

# What a replay needs of each plan row: its due columns but the decision, and the booking.
ROW_FIELDS = (*(c for c in DUE_COLUMNS if c not in ("action", "reason")), "booking_uid")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in ROW_FIELDS}
    out["due_at"] = utc(out["due_at"]).isoformat()
    out["step_number"] = int(out["step_number"])
    booking = out["booking_uid"]
    out["booking_uid"] = "" if booking is None or pd.isna(booking) else str(booking)
    return out


def encode_chunk(chunk: Chunk) -> str:
    return json.dumps([{"row": _row(row), "email": asdict(email)} for row, email in chunk])


def decode_chunk(body: str) -> Chunk:
    chunk: Chunk = []
    for item in json.loads(body):
        row = dict(item["row"])
        row["due_at"] = datetime.fromisoformat(row["due_at"])
        chunk.append((row, OutgoingEmail(**item["email"])))
    return chunk


class SqlSendJournal(SqlDatabase):
    def __init__(self, url: str, engine: Engine | None = None, holder: str = "") -> None:
        super().__init__(url, engine)
        self.holder = holder[:100]

    def begin(self, campaign: Campaign, chunk: Chunk) -> Claim:
        self.prepare()
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                return self._begin(campaign, chunk)
            except sa.exc.OperationalError as exc:
                # Two runs claiming at the same moment: one is chosen to give way. Keys are
                # claimed in sorted order, so this is rare; trying again is safe (nothing
                # of the failed attempt was kept).
                if attempt == DEADLOCK_ATTEMPTS or "deadlock" not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")

    def _begin(self, campaign: Campaign, chunk: Chunk) -> Claim:
        entry_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        keys = sorted({email.idempotency_key for _, email in chunk})
        with self.engine.begin() as conn:
            # One statement, keys in sorted order: two runs always take the row locks in
            # the same order, so they queue instead of deadlocking.
            stmt = (
                upsert(conn, send_claims)
                .values(
                    [
                        {
                            "campaign": campaign.slug,
                            "idempotency_key": key,
                            "entry_id": entry_id,
                            "claimed_at": now,
                        }
                        for key in keys
                    ]
                )
                .on_conflict_do_nothing()
                .returning(send_claims.c.idempotency_key)
            )
            claimed = set(conn.execute(stmt).scalars()) if keys else set()
            sent = self._already_sent(conn, campaign, claimed)
            if sent:
                conn.execute(
                    send_claims.delete().where(
                        send_claims.c.campaign == campaign.slug,
                        send_claims.c.idempotency_key.in_(sorted(sent)),
                    )
                )
            kept = [(r, e) for r, e in chunk if e.idempotency_key in claimed - sent]
            entry = None
            if kept:
                conn.execute(
                    send_journal.insert().values(
                        entry_id=entry_id,
                        campaign=campaign.slug,
                        holder=self.holder,
                        created_at=now,
                        body=encode_chunk(kept),
                    )
                )
                entry = JournalEntry(entry_id, kept, now, self.holder)
        left_out = [
            (row, email, ALREADY_SENT if email.idempotency_key in sent else IN_FLIGHT_ELSEWHERE)
            for row, email in chunk
            if email.idempotency_key not in claimed - sent
        ]
        return Claim(entry, left_out)

    @staticmethod
    def _already_sent(conn: sa.Connection, campaign: Campaign, keys: set[str]) -> set[str]:
        if not keys:
            return set()
        query = sa.select(messages.c.idempotency_key).where(
            messages.c.campaign == campaign.slug, messages.c.idempotency_key.in_(sorted(keys))
        )
        return set(conn.execute(query).scalars())

    def finish(self, entry: JournalEntry) -> None:
        self.prepare()
        with self.engine.begin() as conn:
            conn.execute(send_claims.delete().where(send_claims.c.entry_id == entry.entry_id))
            conn.execute(send_journal.delete().where(send_journal.c.entry_id == entry.entry_id))

    def adopt(self, entry: JournalEntry) -> JournalEntry | None:
        """Make this journal's holder the entry's: None when it is settled or another run
        adopted it first (a compare-and-set on the holder, so only one run replays it)."""
        if entry.holder == self.holder:
            return entry
        self.prepare()
        with self.engine.begin() as conn:
            taken = conn.execute(
                send_journal.update()
                .where(
                    send_journal.c.entry_id == entry.entry_id,
                    send_journal.c.holder == entry.holder,
                )
                .values(holder=self.holder)
            ).rowcount
        return replace(entry, holder=self.holder) if taken == 1 else None

    def pending(self, campaign: Campaign) -> list[JournalEntry]:
        self.prepare()
        query = (
            sa.select(send_journal)
            .where(send_journal.c.campaign == campaign.slug)
            .order_by(send_journal.c.created_at, send_journal.c.entry_id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            JournalEntry(r["entry_id"], decode_chunk(r["body"]), utc(r["created_at"]), r["holder"])
            for r in rows
        ]
