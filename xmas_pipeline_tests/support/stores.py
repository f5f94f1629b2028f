"""Store fixtures shared by tests: SQLite in a temp folder, and a throwaway PostgreSQL DB."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from xmas_pipeline_tests.support.requirements import missing

# The machines run PostgreSQL on 127.0.0.1:5432 with trust auth (see the README).
PG_ADMIN_URL = os.environ.get(
    "XMAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database for one test module, dropped afterwards."""
    name = f"xmas_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        missing(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL}",
            "start it (pg_ctlcluster <version> main start; make test does this when it can) "
            "or point XMAS_TEST_POSTGRES_URL at one",
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
