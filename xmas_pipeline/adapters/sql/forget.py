"""Erasing one person from the SQL store, and the suppression list that remains.

`SqlForget.erase` removes every row of every table that holds the address (as a contact
key, an address column, an idempotency key, a JSON body...), found by searching each
text column and confirmed as a whole address (`core.forget.mentions`), plus the rows
those hang on: a forgotten booking's events, a removed batch's claims, a removed
message's delivery events. Tables added later are searched the same way. What stays is
the address's salted hash in `forgotten` (the salt generated once, in `secrets`), so the
ingestion and the send gate can refuse the address without anyone storing it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert
from xmas_pipeline.adapters.sql.secrets import SqlSecrets
from xmas_pipeline.adapters.sql.tables import (
    booking_events,
    bookings,
    forgotten,
    message_events,
    message_status,
    messages,
    metadata,
    notion_contacts,
    notion_pages,
    secrets,
    send_claims,
    send_journal,
)
from xmas_pipeline.core.forget import forgotten_hash, mentions

FORGET_SALT = "forget-address-salt"
# Hold no address: the generated secrets, and the hashes themselves.
_NEVER_HOLD = {secrets.name, forgotten.name}
_CHUNK = 500


def _like(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def forgotten_among(conn: sa.Connection, keys: Iterable[str]) -> set[str]:
    """Which of these contact keys were forgotten (none while nothing ever was)."""
    wanted = sorted(set(keys))
    if not wanted or conn.execute(sa.select(forgotten.c.address_hash).limit(1)).first() is None:
        return set()
    salt = conn.execute(
        sa.select(secrets.c.value).where(secrets.c.name == FORGET_SALT)
    ).scalar_one_or_none()
    if salt is None:
        return set()
    by_hash = {forgotten_hash(salt, key): key for key in wanted}
    hashes = sorted(by_hash)
    gone: set[str] = set()
    for start in range(0, len(hashes), _CHUNK):  # a whole campaign's keys: in chunks
        chunk = hashes[start : start + _CHUNK]
        found = conn.execute(
            sa.select(forgotten.c.address_hash).where(forgotten.c.address_hash.in_(chunk))
        )
        gone |= {by_hash[row[0]] for row in found}
    return gone


class SqlForget(SqlDatabase):
    def salt(self) -> str:
        return SqlSecrets(self.url, self.engine).get_or_create(FORGET_SALT)

    def address_hash(self, key: str) -> str:
        return forgotten_hash(self.salt(), key)

    def forgotten_keys(self, keys: Iterable[str]) -> set[str]:
        self.prepare()
        with self.engine.connect() as conn:
            return forgotten_among(conn, keys)

    def notion_page_ids(self, key: str) -> tuple[list[str], list[str]]:
        """(Email Sequence page ids, CRM contact page ids) the store knows for `key`."""
        self.prepare()
        with self.engine.connect() as conn:
            sequences = conn.execute(
                sa.select(notion_pages.c.page_id).where(notion_pages.c.contact_key == key)
            )
            contacts = conn.execute(
                sa.select(notion_contacts.c.page_id).where(notion_contacts.c.contact_key == key)
            )
            return (
                sorted({str(r[0]) for r in sequences if r[0]}),
                sorted({str(r[0]) for r in contacts if r[0]}),
            )

    def suppress(self, key: str) -> str:
        """Put the address's hash on the suppression list: the hash."""
        self.prepare()
        digest = self.address_hash(key)
        with self.engine.begin() as conn:
            _keep_hash(conn, digest)
        return digest

    def erase(self, key: str) -> dict[str, int]:
        """Remove every row holding `key` (a contact key) and keep its hash: rows removed
        per table (tables with none are left out)."""
        self.prepare()
        salt = self.salt()
        removed: dict[str, list[dict[str, Any]]] = {}
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:
                if table.name not in _NEVER_HOLD:
                    removed[table.name] = _erase_mentions(conn, table, key)
            _erase_related(conn, removed)
            _keep_hash(conn, forgotten_hash(salt, key))
        return {name: len(rows) for name, rows in removed.items() if rows}


def _keep_hash(conn: sa.Connection, digest: str) -> None:
    conn.execute(
        upsert(conn, forgotten)
        .values(address_hash=digest, forgotten_at=datetime.now(UTC))
        .on_conflict_do_nothing()
    )


def _erase_mentions(conn: sa.Connection, table: sa.Table, key: str) -> list[dict[str, Any]]:
    texts = [c for c in table.columns if isinstance(c.type, sa.String)]
    if not texts:
        return []
    pattern = _like(key)
    candidates = conn.execute(
        sa.select(table).where(
            sa.or_(*(sa.func.lower(c).like(pattern, escape="\\") for c in texts))
        )
    ).mappings()
    rows = [
        dict(row) for row in candidates if any(mentions(str(row[c.name] or ""), key) for c in texts)
    ]
    return _delete_rows(conn, table, rows)


def _delete_rows(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    keys = list(table.primary_key.columns)
    for row in rows:
        conn.execute(table.delete().where(*(c == row[c.name] for c in keys)))
    return rows


def _erase_where(conn: sa.Connection, table: sa.Table, column: str, values: set[str]) -> int:
    if not values:
        return 0
    rows = [
        dict(r)
        for r in conn.execute(
            sa.select(table).where(table.c[column].in_(sorted(values)))
        ).mappings()
    ]
    return len(_delete_rows(conn, table, rows))


def _erase_related(conn: sa.Connection, removed: dict[str, list[dict[str, Any]]]) -> None:
    """Rows that hold no address but exist only for a removed one."""

    def values(table: sa.Table, column: str) -> set[str]:
        return {str(r[column]) for r in removed.get(table.name, []) if r.get(column)}

    related = [
        (booking_events, "booking_uid", values(bookings, "booking_uid")),
        (send_claims, "entry_id", values(send_journal, "entry_id")),
        (message_events, "provider_id", values(messages, "provider_id")),
        (message_status, "provider_id", values(messages, "provider_id")),
    ]
    for table, column, wanted in related:
        count = _erase_where(conn, table, column, wanted)
        if count:
            removed.setdefault(table.name, []).extend([{}] * count)


def suppress_forgotten(flags: pd.DataFrame, gone: set[str]) -> pd.DataFrame:
    """Contact flags with every forgotten key unsubscribed (a row added where none is)."""
    if not gone:
        return flags
    flags = flags.copy()
    flags.loc[flags["contact_key"].astype(str).isin(gone), "unsubscribed"] = True
    missing = sorted(gone - set(flags["contact_key"].astype(str)))
    extra = pd.DataFrame(
        {
            "contact_key": missing,
            "unsubscribed": True,
            "paused": False,
            "delivery_state": "",
            "booked": False,
        }
    )
    return pd.concat([flags, extra], ignore_index=True) if missing else flags
