"""Who may touch which table of the pipeline's PostgreSQL store, and applying it.

`deploy/postgres/roles.sql` makes the roles (no passwords in it); `xmas-pipeline store
migrate`, run as the owner, creates the tables and then gives each role its tables from
the table below. PostgreSQL only lets a table's owner grant on it, which is why the grants
are applied here, after the tables exist, and not in roles.sql.

- `xmas_owner` owns the database and every table: only the migrate step logs in as it.
- `xmas_pipeline` (the code server and its runs) reads and writes every table, never DDL.
- `xmas_intake` (the public HTTP intake) gets only `INTAKE_GRANTS`, and of `secrets` only
  the unsubscribe signing keys' rows (a row-level security policy).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xmas_pipeline.adapters.sql.secrets import UNSUBSCRIBE

OWNER_ROLE = "xmas_owner"
PIPELINE_ROLE = "xmas_pipeline"
INTAKE_ROLE = "xmas_intake"
DAGSTER_ROLE = "xmas_dagster"


@dataclass(frozen=True)
class TableGrant:
    table: str
    privileges: tuple[str, ...]
    # A row filter (SQL, on the table's columns): the role sees only these rows.
    rows: str | None = None


# The intake's whole reach into the store. A table the intake starts to use is one line
# here; a table not created yet (another release's) is granted once it exists.
INTAKE_GRANTS: tuple[TableGrant, ...] = (
    # The unsubscribe (and confirmation) links' keys: the base key and each rotation's.
    TableGrant(
        "secrets",
        ("SELECT",),
        rows=f"name = '{UNSUBSCRIBE}' OR name LIKE '{UNSUBSCRIBE}/%'",
    ),
    # Webhook deliveries already stored (intake/delivery_ids.py), pruned by the intake.
    TableGrant("webhook_ids", ("SELECT", "INSERT", "DELETE")),
    # Signup rate limits, once that table exists.
    TableGrant("rate_counters", ("SELECT", "INSERT", "UPDATE", "DELETE")),
)
PIPELINE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

_POLICY = "xmas_rows"


def existing_roles(conn: Connection) -> set[str]:
    names = (OWNER_ROLE, PIPELINE_ROLE, INTAKE_ROLE)
    rows = conn.execute(
        sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
        {"names": list(names)},
    )
    return {row[0] for row in rows}


def _tables(conn: Connection) -> set[str]:
    rows = conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    )
    return {row[0] for row in rows}


def apply_grants(conn: Connection) -> list[str]:
    """Give the pipeline's and the intake's roles exactly their tables (idempotent; run as
    the tables' owner, in one transaction). Roles that do not exist are left out: a store
    run with one role for everything keeps working. What was granted, one line each."""
    roles = existing_roles(conn)
    tables = _tables(conn)
    done: list[str] = []
    schema = _schema(conn)
    if PIPELINE_ROLE in roles:
        privileges = ", ".join(PIPELINE_PRIVILEGES)
        conn.execute(
            sa.text(f"GRANT {privileges} ON ALL TABLES IN SCHEMA {schema} TO {PIPELINE_ROLE}")
        )
        conn.execute(
            sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {PIPELINE_ROLE}")
        )
        done.append(f"{PIPELINE_ROLE}: {', '.join(PIPELINE_PRIVILEGES)} on every table")
    if INTAKE_ROLE in roles:
        # Start from nothing, so a grant removed from the table is taken back too.
        conn.execute(sa.text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {INTAKE_ROLE}"))
        for grant in INTAKE_GRANTS:
            if grant.table not in tables:
                continue
            conn.execute(
                sa.text(f"GRANT {', '.join(grant.privileges)} ON {grant.table} TO {INTAKE_ROLE}")
            )
            done.append(f"{INTAKE_ROLE}: {', '.join(grant.privileges)} on {grant.table}")
    for grant in INTAKE_GRANTS:
        if grant.table in tables:
            _row_policies(conn, grant, roles)
    return done


def _row_policies(conn: Connection, grant: TableGrant, roles: set[str]) -> None:
    """Row-level security on a table the intake sees only part of: its rows for the intake,
    every row for the pipeline (the owner is exempt)."""
    if grant.rows is None or INTAKE_ROLE not in roles:
        return
    table = grant.table
    conn.execute(sa.text(f"DROP POLICY IF EXISTS {_POLICY}_intake ON {table}"))
    conn.execute(sa.text(f"DROP POLICY IF EXISTS {_POLICY}_pipeline ON {table}"))
    conn.execute(sa.text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    conn.execute(
        sa.text(
            f"CREATE POLICY {_POLICY}_intake ON {table} FOR SELECT TO {INTAKE_ROLE} "
            f"USING ({grant.rows})"
        )
    )
    if PIPELINE_ROLE in roles:
        conn.execute(
            sa.text(
                f"CREATE POLICY {_POLICY}_pipeline ON {table} TO {PIPELINE_ROLE} "
                "USING (true) WITH CHECK (true)"
            )
        )


def _schema(conn: Connection) -> str:
    name = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    return '"' + str(name).replace('"', '""') + '"'
