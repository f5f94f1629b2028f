"""`SqlStore`: the whole state store on SQL (SQLite in `XMAS_HOME` by default, PostgreSQL
by URL): sequences and sends (`sequences.py`), bookings and events (`bookings.py`), and
what Notion should show of each contact (`snapshots.py`), double opt-in's consent records
and held profile changes (`optin.py`)."""

from __future__ import annotations

from xmas_pipeline.adapters.sql.bookings import SqlBookings
from xmas_pipeline.adapters.sql.optin import SqlOptIn
from xmas_pipeline.adapters.sql.sequences import SqlSequences
from xmas_pipeline.adapters.sql.snapshots import SqlSnapshots


class SqlStore(SqlSequences, SqlBookings, SqlSnapshots, SqlOptIn):
    """`StateStore` over SQLAlchemy Core."""
