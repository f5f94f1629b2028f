"""Whatever arrives first, a booking and a signup for the same person end in the same
state: the results email (email 1) may go, the follow-ups (emails 2-7) do not, and the
reminders go. The same for an unsubscribe or a bounce recorded before the signup: nothing
goes. Through the intake over HTTP (a signed Cal.com webhook, the website's signup), the
Dagster jobs and the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from starlette.testclient import TestClient

from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE
from xmas_pipeline.intake.app import create_app
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today

SECRET = "cal-webhook-secret"
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
CALL_IN = 71 * H + 30 * MIN  # reminder-1 (72h before) due 30 minutes ago


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    # Testing mode's nurture (emails a minute apart) with the real reminder offsets (72h,
    # 24h, 2h before the call): a booking made an hour ago for a call 71.5 hours away has
    # reminder-1 due, and no other for two days, however slowly the test runs.
    raw = yaml.safe_load(DEFAULT_CAMPAIGN_FILE.read_text())
    raw["testing"].update(reminder_offsets=["72h", "24h", "2h"], min_reminder_lead="2h")
    campaign_file = tmp_path / "campaign.yaml"
    campaign_file.write_text(yaml.safe_dump(raw))
    # A campaign file's templates are the `templates/` folder beside it.
    shutil.copytree(DEFAULT_CAMPAIGN_FILE.parent / "templates", tmp_path / "templates")
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGN_FILE=str(campaign_file),
        CALCOM_WEBHOOK_SECRET=SECRET,
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with in_memory_instance() as inst:
        yield inst


@pytest.fixture
def intake(env: PipelineEnv) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as client:
        yield client


def post_booking(client: TestClient, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    answer = client.post(
        "/webhook/calcom-booking",
        content=raw,
        headers={"content-type": "application/json", "x-cal-signature-256": signature},
    )
    assert answer.status_code == 200, answer.text


def post_signup(client: TestClient, body: dict[str, Any]) -> None:
    answer = client.post("/webhook/christmas-signup", json=body)
    assert answer.status_code == 202, answer.text


def job(env: PipelineEnv, name: str, instance: dg.DagsterInstance) -> None:
    result = env.defs.resolve_job_def(name).execute_in_process(
        partition_key=today(), instance=instance, raise_on_error=False
    )
    assert result.success


def send_until_quiet(env: PipelineEnv, instance: dg.DagsterInstance, runs: int = 9) -> None:
    """As many send runs as a whole sequence needs (one nurture email per person per run)."""
    for _ in range(runs):
        assert env.send(today(), instance, catch_up=True).success


def age_signups(env: PipelineEnv, by: timedelta) -> None:
    """Every signup file arrived `by` ago: in testing mode all seven steps are then due."""
    when = (datetime.now(UTC) - by).timestamp()
    for item in env.inbox.files("signups", today()):
        os.utime(item.path, (when, when))


def steps_sent(env: PipelineEnv, who: str) -> list[str]:
    names = [n for n in env.outbox_files() if f"__{who}__" in n]
    return sorted(n.split("__")[2].removesuffix(".eml") for n in names)


def test_booking_first_then_signup_gets_the_results_email_and_the_reminders_only(
    env: PipelineEnv, instance: dg.DagsterInstance, intake: TestClient
) -> None:
    # Booked from the website's Cal.com link an hour ago.
    at = now()
    post_booking(intake, webhook_created("bkF1", at + CALL_IN, at=at - H, email="fay@x.com"))
    job(env, "ingest_bookings", instance)
    # Then the assessment.
    post_signup(intake, signup("fay@x.com", red=2, first_name="Fay"))
    age_signups(env, 10 * MIN)
    job(env, "ingest_signups", instance)
    send_until_quiet(env, instance)
    assert steps_sent(env, "fay@x.com")[:1] == ["email-1"]
    assert not [
        s for s in steps_sent(env, "fay@x.com") if s.startswith("email-") and s != "email-1"
    ]
    seq = env.store().load_sequences(env.campaign).set_index("contact_key").loc["fay@x.com"]
    assert bool(seq["booked"]) and seq["exit_reason"] == "booked"


def test_signup_first_then_booking_ends_in_the_same_state(
    env: PipelineEnv, instance: dg.DagsterInstance, intake: TestClient
) -> None:
    post_signup(intake, signup("gus@x.com", red=2, first_name="Gus"))
    age_signups(env, 10 * MIN)
    job(env, "ingest_signups", instance)
    assert env.send(today(), instance, catch_up=True).success  # email-1 goes
    at = now()
    post_booking(intake, webhook_created("bkG1", at + CALL_IN, at=at - H, email="gus@x.com"))
    job(env, "ingest_bookings", instance)
    send_until_quiet(env, instance)
    assert steps_sent(env, "gus@x.com") == ["email-1", "reminder-1"]


def test_reminders_go_to_a_booker_who_signs_up_later(
    env: PipelineEnv, instance: dg.DagsterInstance, intake: TestClient
) -> None:
    at = now()
    post_booking(intake, webhook_created("bkH1", at + CALL_IN, at=at - H, email="hal@x.com"))
    job(env, "ingest_bookings", instance)
    post_signup(intake, signup("hal@x.com", red=1, first_name="Hal"))
    job(env, "ingest_signups", instance)
    send_until_quiet(env, instance, runs=2)
    assert steps_sent(env, "hal@x.com") == ["email-1", "reminder-1"]


@pytest.mark.parametrize(
    "record",
    [
        {"unsubscribed": True},
        {"delivery_state": "bounced"},
        {"delivery_state": "complained"},
    ],
    ids=["unsubscribed", "bounced", "complained"],
)
def test_an_exit_recorded_before_the_signup_stops_everything(
    env: PipelineEnv, instance: dg.DagsterInstance, intake: TestClient, record: dict[str, Any]
) -> None:
    # Recorded at contact level before any sequence existed (an unsubscribe from a
    # reminder's link, a bounce of a reminder).
    env.store().set_contact_flags(env.campaign, "ida@x.com", email="ida@x.com", **record)
    post_signup(intake, signup("ida@x.com", red=2))
    age_signups(env, 10 * MIN)
    job(env, "ingest_signups", instance)
    send_until_quiet(env, instance, runs=2)
    assert steps_sent(env, "ida@x.com") == []
    # And the one-off re-send, which used to read only the sequence row, refuses too.
    resend = env.defs.resolve_job_def(env.name("resend_contact")).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={
            "ops": {
                env.name("resend_to_contact"): {
                    "config": {"email": "ida@x.com", "steps": ["email-1"]}
                }
            }
        },
    )
    assert not resend.success
    assert steps_sent(env, "ida@x.com") == []
