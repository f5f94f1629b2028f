"""`SqlStore`: the whole state store on SQL (SQLite in `XMAS_HOME` by default, PostgreSQL
by URL): sequences and sends (`sequences.py`), bookings and events (`bookings.py`)."""

from __future__ import annotations

from xmas_pipeline.adapters.sql.bookings import SqlBookings
from xmas_pipeline.adapters.sql.sequences import SqlSequences


class SqlStore(SqlSequences, SqlBookings):
    """`StateStore` over SQLAlchemy Core."""
