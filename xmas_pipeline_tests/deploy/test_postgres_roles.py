"""deploy/postgres/roles.sql and `xmas-pipeline store migrate` on a real PostgreSQL.

roles.sql makes the roles and two fresh databases; the migrate step, as the owner, makes the
tables and the grants. Then each role logs in (trust auth, as on the test machines) and is
shown what it may and may not do: the intake's role is refused every table but its own,
sees no secret but the unsubscribe keys, creates nothing, and never opens Dagster's
database, while the real intake code (the unsubscribe key, the webhook ids, the app's
endpoints) works under it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.engine import SqlDatabase
from xmas_pipeline.adapters.sql.privileges import INTAKE_GRANTS, INTAKE_ROLE, PIPELINE_ROLE
from xmas_pipeline.adapters.sql.secrets import (
    UNSUBSCRIBE,
    SqlSecrets,
    read_unsubscribe_keys,
    rotate_unsubscribe_key,
    unsubscribe_keys,
)
from xmas_pipeline.adapters.sql.webhook_ids import SqlWebhookIds
from xmas_pipeline.cli import main
from xmas_pipeline.core.unsubscribe import make_token
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.intake.test_resend import SECRET, event, svix_headers
from xmas_pipeline_tests.support import topology
from xmas_pipeline_tests.support.pipeline_env import signup
from xmas_pipeline_tests.support.requirements import missing
from xmas_pipeline_tests.support.stores import PG_ADMIN_URL

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
OTHER_SECRET = "some-other-generated-secret"


@dataclass(frozen=True)
class Cluster:
    store_db: str
    dagster_db: str

    def url(self, role: str, database: str | None = None) -> str:
        base = sa.engine.make_url(PG_ADMIN_URL)
        url = base.set(username=role, password=None, database=database or self.store_db)
        return url.render_as_string(hide_password=False)

    def admin(self, database: str | None = None) -> sa.engine.Engine:
        url = sa.engine.make_url(PG_ADMIN_URL).set(database=database or self.store_db)
        return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def apply_roles_sql(store_db: str, dagster_db: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        missing("psql is not installed", "apt-get install postgresql-client")
    admin = sa.engine.make_url(PG_ADMIN_URL)
    env = {**os.environ, "PGPASSWORD": admin.password or ""}
    subprocess.run(
        [
            psql,
            "--no-psqlrc",
            "--quiet",
            "-h",
            admin.host or "127.0.0.1",
            "-p",
            str(admin.port or 5432),
            "-U",
            admin.username or "postgres",
            "-d",
            admin.database or "postgres",
            "-v",
            f"store_db={store_db}",
            "-v",
            f"dagster_db={dagster_db}",
            "-f",
            str(ROLES_SQL),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    suffix = uuid.uuid4().hex[:10]
    found = Cluster(store_db=f"xmas_roles_{suffix}", dagster_db=f"dagster_roles_{suffix}")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError:
        admin.dispose()
        missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}", "start it (see the README)")
    try:
        apply_roles_sql(found.store_db, found.dagster_db)
        apply_roles_sql(found.store_db, found.dagster_db)  # idempotent
        yield found
    finally:
        with admin.connect() as conn:
            for name in (found.store_db, found.dagster_db):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def tables(cluster: Cluster) -> set[str]:
    engine = cluster.admin()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def refused(url: str, statement: str) -> bool:
    """Whether `statement` (as the URL's role) is refused for want of a privilege (or of
    owning the table: what ALTER and DROP need)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
        return False
    except sa.exc.ProgrammingError as exc:
        return "permission denied" in str(exc.orig) or "must be owner" in str(exc.orig)
    finally:
        engine.dispose()


def cannot_connect(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            return False
    except sa.exc.OperationalError as exc:
        return "permission denied" in str(exc.orig)
    finally:
        engine.dispose()


def intake_app(tmp_path: Path, url: str, name: str = "w1") -> TestClient:
    settings = Settings.of(
        home=tmp_path / name,
        inbox_url=str(tmp_path / "inbox"),
        database_url=url,
        resend_webhook_secret=SECRET,
        signup_rate_per_email="2/hour",
    )
    return TestClient(create_app(settings))


# The order matters: first the store before its migrate step, then after it.


def test_before_the_migrate_step_the_intake_creates_nothing_and_unsubscribe_answers_503(
    cluster: Cluster, tmp_path: Path
) -> None:
    intake = cluster.url(INTAKE_ROLE)
    assert refused(intake, "CREATE TABLE probe (id int)")
    with intake_app(tmp_path, intake) as client:
        token = make_token("jane@example.com", "a key the store does not have")
        page = client.post(f"/unsubscribe?token={token}", headers=ONE_CLICK)
        assert page.status_code == 503
        # A webhook is still taken (the ids are a help, never a condition).
        raw = event()
        assert (
            client.post("/webhook/resend", content=raw, headers=svix_headers(raw)).json()["status"]
            == "accepted"
        )
    assert tables(cluster) == set()


def test_the_migrate_step_runs_as_the_owner_and_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the owner may: the code server's role cannot make the tables.
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        SqlDatabase(cluster.url(PIPELINE_ROLE)).prepare()
    monkeypatch.setenv("XMAS_DATABASE_URL", cluster.url("xmas_owner"))
    assert main(topology.store_migrate_command()[1:]) == 0
    assert main(topology.store_migrate_command()[1:]) == 0
    out = capsys.readouterr().out
    assert f"granted {INTAKE_ROLE}: SELECT on secrets" in out
    assert {"secrets", "webhook_ids", "sequences", "contacts"} <= tables(cluster)
    # A secret the intake has no business reading, next to the unsubscribe key.
    SqlSecrets(cluster.url("xmas_owner")).get_or_create(OTHER_SECRET)


def test_the_intake_role_is_refused_every_table_but_its_own(cluster: Cluster) -> None:
    intake = cluster.url(INTAKE_ROLE)
    own = {grant.table for grant in INTAKE_GRANTS}
    every = tables(cluster)
    assert {"secrets", "webhook_ids"} <= every
    for table in sorted(every):
        if table in own:
            assert not refused(intake, f"SELECT 1 FROM {table} LIMIT 1"), table
        else:
            assert refused(intake, f"SELECT 1 FROM {table} LIMIT 1"), table
            assert refused(intake, f"DELETE FROM {table}"), table
    # No DDL, no writing a secret, no other database.
    assert refused(intake, "CREATE TABLE probe (id int)")
    assert refused(intake, "ALTER TABLE webhook_ids ADD COLUMN probe int")
    assert refused(intake, "INSERT INTO secrets (name, value, created_at) VALUES ('x', 'y', now())")
    assert refused(intake, f"UPDATE secrets SET value = 'x' WHERE name = '{UNSUBSCRIBE}'")
    assert refused(intake, "DROP TABLE webhook_ids")
    assert cannot_connect(cluster.url(INTAKE_ROLE, cluster.dagster_db))


def test_the_intake_role_sees_only_the_unsubscribe_keys(cluster: Cluster) -> None:
    engine = sa.create_engine(cluster.url(INTAKE_ROLE))
    try:
        with engine.connect() as conn:
            names = {row[0] for row in conn.execute(sa.text("SELECT name FROM secrets"))}
            hidden = conn.execute(
                sa.text("SELECT count(*) FROM secrets WHERE name = :n"), {"n": OTHER_SECRET}
            ).scalar_one()
    finally:
        engine.dispose()
    assert names == {UNSUBSCRIBE}
    assert hidden == 0


def test_the_real_intake_code_works_under_its_role(cluster: Cluster, tmp_path: Path) -> None:
    intake, pipeline = cluster.url(INTAKE_ROLE), cluster.url(PIPELINE_ROLE)
    # The key the intake reads is the one the code server signs with, rotations included.
    rotate_unsubscribe_key(None, pipeline)
    signing = unsubscribe_keys(None, pipeline)
    assert read_unsubscribe_keys(None, intake) == signing
    ids = SqlWebhookIds(intake, create=False)
    try:
        assert ids.record("resend", "msg_1") is True
        assert ids.record("resend", "msg_1") is False
        assert ids.seen("resend", "msg_1")
        assert ids.prune(datetime.now(UTC) + timedelta(seconds=1)) >= 1
        assert not ids.seen("resend", "msg_1")
    finally:
        ids.dispose()
    with ExitStack() as stack:
        first = stack.enter_context(intake_app(tmp_path, intake, "w1"))
        second = stack.enter_context(intake_app(tmp_path, intake, "w2"))
        token = make_token("Jane@Example.com", signing)
        done = first.post(f"/unsubscribe?token={token}", headers=ONE_CLICK)
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        # A repeat reaching the other worker is known through the intake's table.
        raw = event()
        headers = svix_headers(raw, msg_id=f"msg_{uuid.uuid4().hex}")
        assert first.post("/webhook/resend", content=raw, headers=headers).json()["status"] == (
            "accepted"
        )
        again = second.post("/webhook/resend", content=raw, headers=headers)
        assert again.json()["status"] == "duplicate"
        # The signup limits count in the intake's own table, across both workers.
        person = {**signup("x@example.com"), "email": f"{uuid.uuid4().hex[:12]}@example.com"}
        answers = [
            w.post("/webhook/christmas-signup", json=person).status_code
            for w in (first, second, first)
        ]
        assert answers == [202, 202, 429]


def test_the_pipeline_role_reads_and_writes_but_creates_nothing(cluster: Cluster) -> None:
    pipeline = cluster.url(PIPELINE_ROLE)
    # What the code server does when it starts: no DDL once the tables exist.
    SqlDatabase(pipeline).prepare()
    assert SqlSecrets(pipeline).get_or_create(OTHER_SECRET)  # every secret row
    assert not refused(pipeline, "DELETE FROM webhook_ids")
    assert not refused(pipeline, "SELECT 1 FROM contacts")
    assert refused(pipeline, "CREATE TABLE probe (id int)")
    assert refused(pipeline, "DROP TABLE contacts")
    assert cannot_connect(cluster.url(PIPELINE_ROLE, cluster.dagster_db))


def test_dagsters_role_owns_its_database_and_never_opens_the_store(cluster: Cluster) -> None:
    dagster = cluster.url("xmas_dagster", cluster.dagster_db)
    assert not refused(dagster, "CREATE TABLE probe (id int)")
    assert cannot_connect(cluster.url("xmas_dagster"))
    assert cannot_connect(cluster.url("xmas_owner", cluster.dagster_db))
