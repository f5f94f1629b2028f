"""The SQL database under the store: engine, schema creation and small shared helpers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from xmas_pipeline.adapters.sql.tables import metadata


def make_engine(url: str, *, connect_timeout_s: int | None = None) -> Engine:
    """An engine for the store. `connect_timeout_s` bounds how long a PostgreSQL connection
    may take to open (the intake must answer a webhook even while the store is away).

    Its errors never show a statement's parameters (`hide_parameters`): they can hold the
    generated signing key or a contact's details, and an error's text ends up in the run's
    failure, the UI and ops alerts."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            path = Path(database)
            path.parent.mkdir(parents=True, exist_ok=True)  # a fresh XMAS_HOME
            # Contacts and a signing key live in it: readable by its owner only. SQLite
            # gives its -wal and -shm files the same permissions. Created only when it is
            # missing (O_EXCL): closing any descriptor of an existing file would drop
            # every POSIX lock this process holds on it, the locks of SQLite connections
            # other engines here have open, and let another process reset the WAL under
            # them (lost commits, "database disk image is malformed").
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            with contextlib.suppress(PermissionError):  # an older file: tighten it too
                path.chmod(0o600)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the UI's readers and a send run's writer work side by side.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": connect_timeout_s} if connect_timeout_s else {}
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
    )


def create_table(engine: Engine, table: sa.Table) -> None:
    """Create `table` alone when it is missing. Several workers starting at once race to
    create it (a duplicate type on PostgreSQL, "database is locked" on SQLite): the loser
    finds it made."""
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                table.create(conn, checkfirst=True)
            return
        except sa.exc.DBAPIError:
            if sa.inspect(engine).has_table(table.name):
                return
            if attempt == 4:
                raise
            time.sleep(0.1 * (attempt + 1))


def creates_its_tables(url: str) -> bool:
    """Whether a process that only uses a few tables may create them on first use: on
    SQLite (dev, one machine), yes. On PostgreSQL a deployment's roles keep DDL to the
    migrate step (`xmas-pipeline store migrate`, adapters/sql/privileges.py)."""
    return url.startswith("sqlite")


def upsert(conn: Connection, table: sa.Table) -> Any:
    """A dialect INSERT that supports ON CONFLICT (DO NOTHING / DO UPDATE)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(
        f"the SQL store supports SQLite and PostgreSQL, not {conn.dialect.name}"
    )


def utc(moment: Any) -> datetime:
    """Any timestamp as an aware UTC datetime (naive means UTC)."""
    value = pd.Timestamp(moment)
    value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
    return value.to_pydatetime()


def lock_campaign(conn: Connection, slug: str) -> None:
    """Serialise writers of one campaign inside this transaction (SQLite already
    serialises writers)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:8], "big", signed=True)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


class SqlDatabase:
    """An engine and the schema on it, created on first use."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._prepared = False

    def prepare(self, campaign: object = None) -> None:
        if self._prepared:
            return
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                self._add_missing_columns()
                self._add_missing_indexes()
                break
            except sa.exc.OperationalError:
                # Several runs starting at once on a fresh SQLite file race to create the
                # schema ("database is locked"); the loser waits and then finds it made.
                if attempt == 4 or not self.url.startswith("sqlite"):
                    raise
                time.sleep(0.2 * (attempt + 1))
        self._prepared = True

    def _add_missing_columns(self) -> None:
        """Columns added to a table since a database was created (an older release's
        store): each new column has a server default, so adding it is all it takes. A
        column an older release kept shorter (VARCHAR(n), now TEXT) is widened, on
        PostgreSQL; SQLite never enforced the length."""
        inspector = sa.inspect(self.engine)
        for table in metadata.sorted_tables:
            existing = {column["name"]: column for column in inspector.get_columns(table.name)}
            present = set(existing)
            for column in table.columns:
                if column.name in present:
                    self._widen(table.name, column, existing[column.name]["type"])
                    continue
                with self.engine.begin() as conn:
                    ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                    try:
                        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
                    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                        # Another process added it first (or it is being added).
                        if column.name not in {
                            c["name"] for c in sa.inspect(self.engine).get_columns(table.name)
                        }:
                            raise

    def _add_missing_indexes(self) -> None:
        """Indexes added to a table since a database was created (`create_all` makes
        those of new tables only)."""
        inspector = sa.inspect(self.engine)
        for table in metadata.sorted_tables:
            present = {index["name"] for index in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name in present:
                    continue
                try:
                    index.create(self.engine, checkfirst=True)
                except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                    # Another process made it first (or is making it).
                    names = {i["name"] for i in sa.inspect(self.engine).get_indexes(table.name)}
                    if index.name not in names:
                        raise

    def _widen(self, table: str, column: sa.Column[Any], found: Any) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        if not (isinstance(column.type, sa.Text) and isinstance(found, sa.String)):
            return
        if isinstance(found, sa.Text) or found.length is None:
            return
        with self.engine.begin() as conn:
            # Widening VARCHAR to TEXT keeps every value and needs no table rewrite.
            conn.execute(sa.text(f'ALTER TABLE {table} ALTER COLUMN "{column.name}" TYPE text'))

    def dispose(self) -> None:
        self.engine.dispose()

    def read_frame(self, query: Any, times: Iterable[str] = ()) -> pd.DataFrame:
        """A query's rows as a frame, with the named columns as UTC datetimes."""
        self.prepare()
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for name in times:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        return frame
