"""Secrets the deployment makes for itself, once, and keeps in the SQL store.

The unsubscribe links are signed with `XMAS_UNSUBSCRIBE_SECRET`; without it, a random key
is generated the first time any process asks, stored in the `secrets` table, and from then
on every process (the intake checking a link, the run worker signing one, on any host)
reads the same key. Creating it is a race-free insert: the first writer wins and everyone
reads the winner's value. The SQLite file is readable by its owner only.

Rotating the key (`xmas-pipeline rotate-unsubscribe-key`) adds a key under the next id
(`unsubscribe-signing-key/1`, `/2`...) and keeps the older ones: links carry their key's
id, so every link already sent still verifies. The base key (configured or generated) is
id "0", the one tokens made before key ids were signed with.

The production intake only reads (`read_unsubscribe_keys`): its database role may not
create tables or keys, so the key is made by `xmas-pipeline store migrate` (or the first
send run), and until then the intake answers that unsubscribing is unavailable.
"""

from __future__ import annotations

import secrets as random
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert
from xmas_pipeline.adapters.sql.tables import secrets
from xmas_pipeline.core.unsubscribe import SigningKeys

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

    def numbered(self, name: str) -> list[tuple[str, str]]:
        """(number, value) of `name/<n>` entries, in order."""
        self.prepare()
        return self.read_numbered(name)

    def read_numbered(self, name: str) -> list[tuple[str, str]]:
        """`numbered` without creating anything (the table must exist)."""
        prefix = f"{name}/"
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(secrets.c.name, secrets.c.value).where(secrets.c.name.startswith(prefix))
            ).all()
        found = [(r[0][len(prefix) :], str(r[1])) for r in rows]
        return sorted((n, v) for n, v in found if n.isdigit())

    def read(self, name: str) -> str | None:
        """One value, or None; creates nothing (the table must exist)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name))
            found = value.scalar_one_or_none()
        return None if found is None else str(found)

    def add_numbered(self, name: str) -> str:
        """A new random value under the next `name/<n>`: its number."""
        while True:
            taken = [int(n) for n, _ in self.numbered(name)]
            number = str(max(taken, default=0) + 1)
            with self.engine.begin() as conn:
                added = conn.execute(
                    upsert(conn, secrets)
                    .values(
                        name=f"{name}/{number}",
                        value=random.token_urlsafe(32),
                        created_at=datetime.now(UTC),
                    )
                    .on_conflict_do_nothing()
                    .returning(secrets.c.name)
                ).first()
            if added is not None:  # else another rotation took that number: the next
                return number


def unsubscribe_secret(
    configured: str | None, database_url: str, engine: Engine | None = None
) -> str:
    """The configured key, else the one this deployment generated and keeps."""
    if configured:
        return configured
    return SqlSecrets(database_url, engine).get_or_create(UNSUBSCRIBE)


def unsubscribe_keys(
    configured: str | None, database_url: str, engine: Engine | None = None
) -> SigningKeys:
    """Every unsubscribe key, oldest first: the base key, then each rotation's."""
    base = unsubscribe_secret(configured, database_url, engine)
    rotated = SqlSecrets(database_url, engine).numbered(UNSUBSCRIBE)
    return SigningKeys((("0", base), *rotated))


class SigningKeyMissing(LookupError):
    """No unsubscribe key was generated yet (`xmas-pipeline store migrate` makes it)."""


def read_unsubscribe_keys(
    configured: str | None, database_url: str, engine: Engine | None = None
) -> SigningKeys:
    """`unsubscribe_keys` for a role that may only read: it creates neither the table nor
    the key. A missing table raises the database's error; a missing key SigningKeyMissing."""
    store = SqlSecrets(database_url, engine)
    base = configured or store.read(UNSUBSCRIBE)
    if not base:
        raise SigningKeyMissing(UNSUBSCRIBE)
    return SigningKeys((("0", base), *store.read_numbered(UNSUBSCRIBE)))


def rotate_unsubscribe_key(
    configured: str | None, database_url: str, engine: Engine | None = None
) -> str:
    """Add a new current unsubscribe key (the old ones still verify): its id."""
    unsubscribe_secret(configured, database_url, engine)  # the base key exists first
    return SqlSecrets(database_url, engine).add_numbered(UNSUBSCRIBE)
