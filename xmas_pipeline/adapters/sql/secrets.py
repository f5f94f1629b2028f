"""Secrets the deployment makes for itself, once, and keeps in the SQL store.

The unsubscribe links are signed with `XMAS_UNSUBSCRIBE_SECRET`; without it, a random key
is generated the first time any process asks, stored in the `secrets` table, and from then
on every process (the intake checking a link, the run worker signing one, on any host)
reads the same key. Creating it is a race-free insert: the first writer wins and everyone
reads the winner's value. The SQLite file is readable by its owner only.
"""

from __future__ import annotations

import secrets as random
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert
from xmas_pipeline.adapters.sql.tables import secrets

UNSUBSCRIBE = "unsubscribe-signing-key"


class SqlSecrets(SqlDatabase):
    def get_or_create(self, name: str) -> str:
        self.prepare()
        with self.engine.begin() as conn:
            conn.execute(
                upsert(conn, secrets)
                .values(name=name, value=random.token_urlsafe(32), created_at=datetime.now(UTC))
                .on_conflict_do_nothing()
            )
            value = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name))
            return str(value.scalar_one())


def unsubscribe_secret(
    configured: str | None, database_url: str, engine: Engine | None = None
) -> str:
    """The configured key, else the one this deployment generated and keeps."""
    if configured:
        return configured
    return SqlSecrets(database_url, engine).get_or_create(UNSUBSCRIBE)
