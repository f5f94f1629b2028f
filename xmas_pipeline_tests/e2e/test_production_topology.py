"""Production as it runs: Dagster on PostgreSQL with the code server, the webserver and the
daemon as separate processes, the intake with two workers, Resend (the fake) on loopback.

Each scenario kills something the way a crash, an OOM kill or a host restart would
(`kill -9`) and checks that nothing is sent twice, nothing accepted is lost, and the
campaign goes on by itself: a signup becomes a welcome email; a send run's worker dies
mid-send; the daemon dies mid-tick; a send run's worker dies with its code server; an
ingestion run's worker dies right after the sensor launched it.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.tables import send_journal
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake
from xmas_pipeline_tests.support.pipeline_env import DEFAULT_PREFIX, default_name, signup
from xmas_pipeline_tests.support.production import Production, running_production, wait_until

pytestmark = pytest.mark.slow

DEAD_AFTER = 12  # seconds without a heartbeat before a run counts as dead (default 120)


@pytest.fixture(scope="module")
def resend() -> Iterator[FakeResendAPI]:
    with running_fake(rate_limit=None) as fake:
        yield fake


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, resend: FakeResendAPI) -> Iterator[Production]:
    env = {
        "XMAS_TESTING_MODE": "true",
        "XMAS_SENSOR_INTERVAL_SECONDS": "2",
        "XMAS_RUN_HEARTBEAT_SECONDS": "2",
        "XMAS_RUN_DEAD_AFTER_SECONDS": str(DEAD_AFTER),
        "RESEND_API_KEY": DEFAULT_API_KEY,
        "RESEND_API_URL": resend.base_url,
        "XMAS_PUBLIC_URL": "https://campaign.example.com",
        "XMAS_UNSUBSCRIBE_SECRET": "topology-unsubscribe-secret",
        "XMAS_POSTAL_ADDRESS": "BusOS Ltd, 1 King St W, Toronto ON",
    }
    with running_production(tmp_path_factory.mktemp("prod"), env) as production:
        yield production


@pytest.fixture(scope="module")
def instance(prod: Production) -> Iterator[dg.DagsterInstance]:
    with prod.instance() as inst:
        yield inst


def post_signups(prod: Production, emails: list[str]) -> None:
    with httpx.Client(base_url=prod.intake_url, timeout=30) as client:
        for email in emails:
            response = client.post("/webhook/christmas-signup", json=signup(email))
            assert response.status_code == 202, response.text


def sent_messages(resend: FakeResendAPI) -> Counter[tuple[str, str]]:
    """How many times Resend accepted each (address, step)."""
    return Counter((mail.to[0], str(mail.tags.get("step"))) for mail in resend.accepted)


def welcomed(resend: FakeResendAPI, emails: list[str]) -> bool:
    sent = sent_messages(resend)
    return all(sent[(e, "email-1")] for e in emails)


def assert_each_once(resend: FakeResendAPI, emails: list[str]) -> None:
    """Every welcome accepted once, and no message of anyone twice. (In testing mode a
    step falls due a minute after the last: on a busy machine the second email of the
    first signups may already be out, which is on time, not a duplicate.)"""
    sent = sent_messages(resend)
    assert {e: sent[(e, "email-1")] for e in emails} == dict.fromkeys(emails, 1)
    twice = {message: n for message, n in sent.items() if n > 1}
    assert twice == {}


def open_batches(prod: Production) -> int:
    engine = sa.create_engine(prod.env["XMAS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return len(conn.execute(sa.select(send_journal.c.entry_id)).all())
    finally:
        engine.dispose()


def send_in_flight(prod: Production, instance: dg.DagsterInstance, resend: FakeResendAPI) -> str:
    """The run whose batch is at Resend now (the fake holds each request a while)."""
    before = resend.started

    def busy() -> str | None:
        if resend.started <= before:
            return None
        started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        for run in started:
            if run.job_name == default_name("send_due_emails") and prod.worker_pid(
                instance, run.run_id
            ):
                return run.run_id
        return None

    run_id = wait_until(busy, timeout=90, interval=0.2)
    assert run_id, "no send run reached Resend"
    return str(run_id)


def test_the_webserver_lists_the_assets_sensors_and_schedule(prod: Production) -> None:
    data = prod.graphql(
        "{ assetNodes { assetKey { path } } "
        "repositoriesOrError { ... on RepositoryConnection { nodes { "
        "sensors { name } schedules { name } } } } }"
    )
    assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    own = {f"{DEFAULT_PREFIX}/{name}" for name in ("due_emails", "deliveries", "funnel")}
    assert {"signups", "email_sequences", *own} <= assets
    [repo] = data["repositoriesOrError"]["nodes"]
    sensors = {s["name"] for s in repo["sensors"]}
    assert {"signups_sensor", "send_after_signups_sensor", "run_watchdog_sensor"} <= sensors
    assert default_name("send_schedule") in {s["name"] for s in repo["schedules"]}


def test_a_signup_becomes_a_welcome_email(prod: Production, resend: FakeResendAPI) -> None:
    emails = ["first@topology.example.com"]
    post_signups(prod, emails)
    assert wait_until(lambda: welcomed(resend, emails), timeout=90), prod.log_tail("daemon")
    assert_each_once(resend, emails)
    [mail] = [m for m in resend.accepted if m.to == emails]
    assert mail.tags["step"] == "email-1"


def test_a_send_worker_killed_mid_send(
    prod: Production, instance: dg.DagsterInstance, resend: FakeResendAPI
) -> None:
    emails = [f"mid-send-{i}@topology.example.com" for i in range(10)]
    resend.latency_s = 6
    post_signups(prod, emails)
    run_id = send_in_flight(prod, instance, resend)
    pid = prod.worker_pid(instance, run_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # Resend still takes the batch: accepted, not recorded
    resend.latency_s = 0
    # The next send run (here: the one the next signup brings) replays the open batch.
    late = ["after-kill@topology.example.com"]
    post_signups(prod, late)
    assert wait_until(lambda: welcomed(resend, emails + late), timeout=120), prod.describe_runs(
        instance
    )
    assert wait_until(lambda: open_batches(prod) == 0, timeout=60)
    assert_each_once(resend, emails + late)
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE


def test_the_daemon_killed_mid_tick(
    prod: Production, instance: dg.DagsterInstance, resend: FakeResendAPI
) -> None:
    emails = [f"daemon-{i}@topology.example.com" for i in range(5)]
    before = {run.run_id for run in prod.runs(instance)}
    post_signups(prod, emails)
    # Killed in the middle of its work on them: its sensors have requested a run for the
    # new files, and the fan-out that follows (ingestion, then the send) is still to come.
    assert wait_until(lambda: {r.run_id for r in prod.runs(instance)} - before, timeout=60)
    prod.kill("daemon")
    prod.start("daemon")
    assert wait_until(lambda: welcomed(resend, emails), timeout=120), prod.log_tail("daemon")
    # A tick the restart replays would start a second send run: wait until the runs it
    # may have started have ended, then look again over two sensor intervals (2 s each).
    assert wait_until(lambda: prod.idle(instance), timeout=60), prod.describe_runs(instance)
    repeated = wait_until(
        lambda: any(n > 1 for n in sent_messages(resend).values()), timeout=4, interval=0.5
    )
    assert not repeated, sent_messages(resend)
    assert_each_once(resend, emails)


def test_a_send_worker_killed_with_its_code_server(
    prod: Production, instance: dg.DagsterInstance, resend: FakeResendAPI
) -> None:
    emails = [f"with-server-{i}@topology.example.com" for i in range(10)]
    resend.latency_s = 6
    post_signups(prod, emails)
    run_id = send_in_flight(prod, instance, resend)
    prod.kill("code-server")  # the whole group: the run worker goes with it
    resend.latency_s = 0
    prod.start("code-server")  # as a supervisor would restart it
    started = time.monotonic()

    def marked_failed() -> bool:
        run = instance.get_run_by_id(run_id)
        return run is not None and run.status == dg.DagsterRunStatus.FAILURE

    assert wait_until(marked_failed, timeout=300), prod.log_tail("code-server")
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "no heartbeat" in (failure.dagster_event.message or "")  # type: ignore[union-attr]
    late = ["after-server-restart@topology.example.com"]
    post_signups(prod, late)
    assert wait_until(lambda: welcomed(resend, emails + late), timeout=300)
    assert time.monotonic() - started < 300
    assert wait_until(lambda: open_batches(prod) == 0, timeout=60)
    assert_each_once(resend, emails + late)


def test_an_ingestion_worker_killed_right_after_launch(
    prod: Production, instance: dg.DagsterInstance, resend: FakeResendAPI
) -> None:
    # Enough signups that the kill lands while the run is still working on them.
    emails = [f"ingest-{i:04d}@topology.example.com" for i in range(600)]
    before = {r.run_id for r in prod.runs(instance, "ingest_signups")}
    with httpx.Client(base_url=prod.intake_url, timeout=30) as client:
        for email in emails:
            assert client.post("/webhook/christmas-signup", json=signup(email)).status_code == 202

    def launched() -> tuple[str, int] | None:
        for run in prod.runs(instance, "ingest_signups"):
            pid = prod.worker_pid(instance, run.run_id)
            if run.run_id not in before and pid and run.status == dg.DagsterRunStatus.STARTED:
                return run.run_id, pid
        return None

    found = wait_until(launched, timeout=60, interval=0.05)
    assert found, prod.log_tail("daemon")
    run_id, pid = found
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    assert wait_until(lambda: welcomed(resend, emails), timeout=300, interval=2)
    assert time.monotonic() - started < 300
    killed = instance.get_run_by_id(run_id)
    assert killed is not None and killed.status == dg.DagsterRunStatus.FAILURE
    retries = [
        r
        for r in prod.runs(instance, "ingest_signups")
        if r.tags.get("dagster/parent_run_id") == run_id
    ]
    assert retries, "the failed ingestion run was not retried"
    assert_each_once(resend, emails)
