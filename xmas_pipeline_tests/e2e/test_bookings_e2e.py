"""Bookings end to end through a real Dagster instance: inbox file -> booking state ->
reminder in the outbox; a cancelled booking -> no reminder; email events -> exit flags.

Time travel: a Cal.com webhook carries its own `createdAt`, which is when the booking was
made, so a booking "made an hour ago" for a meeting 71.5 hours away has its 72-hour
reminder due half an hour ago (the real cadence, so nothing depends on the test's speed).
"""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from xmas_pipeline.adapters.inbox import InboxFile
from xmas_pipeline.adapters.outbox import OutboxSender
from xmas_pipeline.core.context import message_context
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.dagster_defs.resources import InboxResource
from xmas_pipeline.services.planning import due_plan, send_gate
from xmas_pipeline.services.sending import Envelope, deliver
from xmas_pipeline_tests.fakes.calcom_api import DEFAULT_API_KEY, FakeCalcomApi
from xmas_pipeline_tests.support.calcom_payloads import (
    api_booking,
    webhook_cancelled,
    webhook_created,
    webhook_rescheduled,
)
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
)

NOW = datetime.now(UTC).replace(microsecond=0)
H = timedelta(hours=1)
START = NOW + 71 * H + 30 * timedelta(minutes=1)  # reminder-1 (72h before) due 30 min ago


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home")  # the real cadence: reminders 72h, 24h, 2h before


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with in_memory_instance() as inst:
        yield inst


def drop(env: PipelineEnv, kind: str, body: dict[str, Any]) -> InboxFile:
    return env.inbox.write(kind, json.dumps(body).encode())


def run(env: PipelineEnv, job: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return env.defs.resolve_job_def(job).execute_in_process(
        partition_key=today(), instance=instance, raise_on_error=False
    )


def read_eml(env: PipelineEnv, name: str) -> email.message.EmailMessage:
    return email.message_from_bytes((env.outbox / name).read_bytes(), policy=policy.default)


def reminder_file(step: int, uid: str, who: str = "jane@example.com") -> str:
    return f"christmas-2025__{who}__reminder-{step}__{uid}.eml"


def test_booking_in_the_inbox_becomes_a_reminder_in_the_outbox(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    env.drop_signup(signup("jane@example.com", red=1, first_name="Jane"))
    drop(env, "bookings", webhook_created("bkA1", START, at=NOW - H))
    assert run(env, "ingest_signups", instance).success
    ingest = run(env, "ingest_bookings", instance)
    assert ingest.success
    assert check_results(ingest) == {"no_rejected_files": True}
    state = materializations(ingest, "booking_state")[0]
    assert state["new changes"] == 1 and state["contacts booked"] == 1

    sent = env.send(today(), instance, catch_up=True)
    assert sent.success
    # Booked: the results email (email-1) still goes, and reminder-1; no follow-ups.
    welcome = "christmas-2025__jane@example.com__email-1.eml"
    assert env.outbox_files() == [welcome, reminder_file(1, "bkA1")]
    meta = materializations(sent, "deliveries")[0]
    assert meta["sent by step"] == {"email-1": 1, "reminder-1": 1}

    message = read_eml(env, reminder_file(1, "bkA1"))
    assert message["To"] == "Jane@example.com"
    assert message["X-Tag-Step"] == "reminder-1" and message["X-Tag-Segment"] == "URGENT"
    html = message.get_body(("html",)).get_content()
    local = START.astimezone(ZoneInfo("America/Toronto"))
    assert f"{local:%B} {local.day}, {local.year}" in html
    assert f"{int(local.strftime('%I'))}:{local:%M} {local:%p}" in html
    assert "America/Toronto" in html
    assert "https://app.cal.com/video/bkA1" in html
    assert "Hi Jane" in html

    contact = env.store().load_contact_bookings(env.campaign).iloc[0]
    assert (contact["booking_status"], contact["campaign_status"]) == ("Booked", "Pre-Call Prep")
    assert contact["call_date"] == START

    # Nothing more due; re-ingesting the day and re-running change nothing.
    assert run(env, "ingest_bookings", instance).success
    again = env.send(today(), instance, catch_up=True)
    assert materializations(again, "deliveries")[0]["sent"] == 0
    assert env.outbox_files() == [welcome, reminder_file(1, "bkA1")]


def test_cancelled_booking_gets_no_reminder(env: PipelineEnv, instance: dg.DagsterInstance) -> None:
    drop(env, "bookings", webhook_created("bkC1", START, at=NOW - H))
    drop(env, "bookings", webhook_cancelled("bkC1", START, at=NOW - 50 * timedelta(minutes=1)))
    assert run(env, "ingest_bookings", instance).success
    sent = env.send(today(), instance, catch_up=True)
    assert sent.success
    assert env.outbox_files() == []
    contact = env.store().load_contact_bookings(env.campaign).iloc[0]
    assert contact["booking_status"] == "Not Booked"


def test_reschedule_sends_the_new_time_once(env: PipelineEnv, instance: dg.DagsterInstance) -> None:
    drop(env, "bookings", webhook_created("bkOld", START, at=NOW - 2 * H))
    assert run(env, "ingest_bookings", instance).success
    env.send(today(), instance, catch_up=True)
    assert env.outbox_files() == [reminder_file(1, "bkOld")]

    new_start = START + 24 * H
    drop(
        env,
        "bookings",
        webhook_rescheduled("bkNew", new_start, old_uid="bkOld", old_start=START, at=NOW - H),
    )
    assert run(env, "ingest_bookings", instance).success
    env.send(today(), instance, catch_up=True)
    # reminder-1 was sent for the old booking: not again for the new one.
    assert env.outbox_files() == [reminder_file(1, "bkOld")]
    frame = env.store().load_bookings(env.campaign).set_index("booking_uid")
    assert frame.loc["bkOld", "status"] == "rescheduled"
    assert frame.loc["bkNew", "start"] == new_start


def test_a_cancellation_landing_after_planning_is_caught_before_sending(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    drop(env, "bookings", webhook_created("bkR1", START, at=NOW - H))
    assert run(env, "ingest_bookings", instance).success
    job = env.defs.resolve_job_def(env.name("send_due_emails"))
    config = {"ops": {env.name("deliveries"): {"config": {"catch_up": True}}}}
    planned = job.execute_in_process(
        partition_key=today(),
        instance=instance,
        run_config=config,
        asset_selection=[env.key("templates"), env.key("due_emails")],
    )
    assert planned.success
    assert materializations(planned, "due_emails")[0]["due by step"] == {"reminder-1": 1}
    # The plan as a send run makes it, before the cancellation.
    plan, _ = due_plan(env.store(), env.campaign, datetime.now(UTC))
    assert plan["step_id"].tolist() == ["reminder-1"]
    # The cancellation arrives between the plan and the send.
    drop(env, "bookings", webhook_cancelled("bkR1", START, at=NOW - 10 * timedelta(minutes=1)))
    assert run(env, "ingest_bookings", instance).success

    # The send path, handed the plan made before the cancellation, re-reads the booking
    # just before sending and holds the reminder back.
    store = env.store()
    report = deliver(
        store=store,
        sender=OutboxSender(env.outbox),
        renderer=Renderer(load_template_dir()),
        campaign=env.campaign,
        plan=plan,
        context_for=lambda row: message_context(row, env.campaign, ""),
        envelope=Envelope(from_email=env.settings.from_email),
        gate=send_gate(store, env.campaign, None),
    )
    assert not report.sent
    assert [item["reason"] for item in report.skipped] == ["booking-cancelled"]
    assert env.outbox_files() == []

    # And a send run now plans from the current state: nothing to send at all.
    sent = job.execute_in_process(
        partition_key=today(),
        instance=instance,
        run_config=config,
        asset_selection=[env.key("deliveries")],
    )
    assert sent.success
    assert env.outbox_files() == []


def test_a_booker_who_never_signed_up_gets_reminders(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    drop(
        env,
        "bookings",
        webhook_created("bkS1", START, at=NOW - H, email="walk.in@example.com", name="Walk In"),
    )
    assert run(env, "ingest_bookings", instance).success
    env.send(today(), instance, catch_up=True)
    name = reminder_file(1, "bkS1", "walk.in@example.com")
    assert env.outbox_files() == [name]
    assert "Hi Walk" in read_eml(env, name).get_body(("html",)).get_content()


def test_bad_booking_files_are_reported_and_kept(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    broken = webhook_created("bkB1", START, at=NOW - H)
    del broken["payload"]["attendees"]
    bad = drop(env, "bookings", broken)
    ping = drop(
        env, "bookings", {"triggerEvent": "PING", "createdAt": NOW.isoformat(), "payload": {}}
    )
    result = run(env, "ingest_bookings", instance)
    assert result.success
    assert check_results(result) == {"no_rejected_files": False}
    meta = materializations(result, "bookings")[0]
    assert meta["rejected"] == 1 and meta["ignored (other triggers)"] == 1
    assert "attendees" in meta["rejected files"]
    assert Path(bad.path).exists() and Path(ping.path).exists()


def test_bounce_and_unsubscribe_events_stop_emails(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    env.drop_signup(signup("bob@example.com", first_name="Bob"))
    drop(
        env,
        "bookings",
        webhook_created("bkU1", START, at=NOW - H, email="una@example.com", name="Una"),
    )
    run(env, "ingest_signups", instance)
    run(env, "ingest_bookings", instance)
    drop(
        env,
        "email-events",
        {
            "type": "email.bounced",
            "created_at": NOW.isoformat(),
            "data": {
                "email_id": "re_bob_1",
                "to": ["bob@example.com"],
                "created_at": NOW.isoformat(),
                "bounce": {"message": "550 5.1.1 user unknown", "type": "Permanent"},
            },
        },
    )
    drop(
        env,
        "email-events",
        {
            "type": "contact.unsubscribed",
            "created_at": NOW.isoformat(),
            "data": {"email": "una@example.com", "source": "one-click"},
        },
    )
    events = run(env, "ingest_email_events", instance)
    assert events.success
    meta = materializations(events, "email_events")[0]
    assert meta["new"] == 2 and "una@example.com" in meta["contacts stopped"]
    sent = env.send(today(), instance, catch_up=True)
    assert env.outbox_files() == []  # Bob bounced (no email-1), Una unsubscribed (no reminder)
    problems = materializations(sent, "deliveries")[0]["problems"]
    assert "bounced" in problems and "unsubscribed" in problems
    # Re-ingesting the same events: repeats, nothing new.
    again = materializations(run(env, "ingest_email_events", instance), "email_events")[0]
    assert again["new"] == 0 and again["repeats"] == 2


def test_delivery_events_update_the_message_status(
    env: PipelineEnv, instance: dg.DagsterInstance
) -> None:
    drop(env, "bookings", webhook_created("bkD1", START, at=NOW - H))
    run(env, "ingest_bookings", instance)
    env.send(today(), instance, catch_up=True)
    log = env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")
    provider_id = log.iloc[0]["provider_id"]
    for kind, minutes in (("email.delivered", 1), ("email.opened", 2), ("email.delivered", 3)):
        at = (NOW + timedelta(minutes=minutes)).isoformat()
        drop(
            env,
            "email-events",
            {
                "type": kind,
                "created_at": at,
                "data": {"email_id": provider_id, "created_at": at, "to": ["jane@example.com"]},
            },
        )
    assert run(env, "ingest_email_events", instance).success
    status = env.store().delivery_status(env.campaign).iloc[0]
    assert status["message_id"] == log.iloc[0]["message_id"]
    assert status["status"] == "opened"


def test_bookings_sensor_requests_a_run_per_changed_day(env: PipelineEnv) -> None:
    sensor = env.defs.resolve_sensor_def("bookings_sensor")
    resources = {"inbox": InboxResource(root=str(env.settings.inbox_root))}
    with in_memory_instance() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        assert isinstance(sensor(context), dg.SkipReason)
        drop(env, "bookings", webhook_created("bkZ1", START, at=NOW))
        requests = sensor(context)
        assert [r.partition_key for r in requests] == [today()]
        assert requests[0].job_name in (None, "ingest_bookings")


def test_calcom_poll_sensor_feeds_the_inbox(tmp_path: Path) -> None:
    with FakeCalcomApi() as fake:
        env = make_env(tmp_path / "home", CALCOM_API_KEY=DEFAULT_API_KEY, CALCOM_API_URL=fake.url)
        fake.put(api_booking("bkP1", START, created=NOW - H))
        sensor = env.defs.resolve_sensor_def("calcom_poll_sensor")
        from xmas_pipeline.dagster_defs.resources import CalcomResource

        resources = {
            "inbox": InboxResource(root=str(env.settings.inbox_root)),
            "calcom": CalcomResource(api_key=DEFAULT_API_KEY, api_url=fake.url),
        }
        with in_memory_instance() as instance:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            first = sensor(context)
            assert "1 new booking" in first.skip_message
            cursor = context.cursor
            second = sensor(
                dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            )
            assert "no booking changes" in second.skip_message
            assert len(env.inbox.files("bookings", today())) == 1
            assert run(env, "ingest_bookings", instance).success
            env.send(today(), instance, catch_up=True)
        assert {r.authorization for r in fake.requests} == {f"Bearer {DEFAULT_API_KEY}"}
    assert env.outbox_files() == [reminder_file(1, "bkP1")]
