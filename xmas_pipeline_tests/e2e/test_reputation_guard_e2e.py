"""The reputation guard end to end: a send run through the outbox (testing mode), then
Resend's signed webhooks through the intake, then the email_events job. A bounce or
complaint storm pauses sending and tells ops once; the warn line tells ops and turns the
check red without pausing; below the minimum volume nothing happens; a resume starts a
fresh count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.intake.app import create_app
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.intake.test_resend import SECRET, svix_headers
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)

MIN_SENT = 20  # XMAS_REPUTATION_MIN_SENT: small, so a storm needs few emails


@pytest.fixture
def hook() -> Iterator[ChatWebhookServer]:
    with ChatWebhookServer(flavour="discord") as server:
        yield server


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with in_memory_instance() as inst:
        yield inst


def pipeline(tmp_path: Path, hook: ChatWebhookServer) -> PipelineEnv:
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        RESEND_WEBHOOK_SECRET=SECRET,
        XMAS_ALERT_WEBHOOK_URL=hook.url,
        XMAS_REPUTATION_MIN_SENT=str(MIN_SENT),
    )


def send_to(env: PipelineEnv, instance: dg.DagsterInstance, people: int) -> list[tuple[str, str]]:
    """Welcome `people` signups through the outbox: (provider id, address) of each email."""
    for i in range(people):
        env.drop_signup(signup(f"p{i}@example.com"))
    assert env.ingest(today(), instance).success
    assert env.send(today(), instance, catch_up=True).success
    log = env.store().sent_log(env.campaign, "2000-01-01", "2999-12-31")
    assert len(log) == people and (log["provider_id"] != "").all()
    return [(row.provider_id, row.contact_key) for row in log.itertuples()]


def post_events(env: PipelineEnv, kind: str, emails: list[tuple[str, str]]) -> None:
    """Resend's webhooks for these emails, signed, through the intake."""
    client = TestClient(create_app(env.settings))
    for provider_id, address in emails:
        data: dict[str, Any] = {"email_id": provider_id, "to": [address]}
        if kind == "email.bounced":
            data["bounce"] = {"type": "Permanent", "message": "550 5.1.1 user unknown"}
        raw = json.dumps({"type": kind, "created_at": "2025-12-01T10:00:00Z", "data": data})
        headers = svix_headers(raw.encode(), msg_id=f"msg_{kind}_{provider_id}")
        answer = client.post("/webhook/resend", content=raw, headers=headers)
        assert answer.status_code == 200, answer.text


def guard_check(env: PipelineEnv, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    result = env.defs.resolve_job_def("ingest_email_events").execute_in_process(
        partition_key=today(), instance=instance, raise_on_error=False
    )
    assert result.success
    assert materializations(result, "email_events")
    found = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "sender_reputation"
    ]
    assert len(found) == 1
    return found[0]


def meta(check: dg.AssetCheckEvaluation) -> dict[str, Any]:
    return {k: v.value for k, v in check.metadata.items()}


def guard_posts(hook: ChatWebhookServer) -> list[str]:
    """The reputation guard's posts (a CRITICAL signup would post too)."""
    bodies = [json.dumps(post.body) for post in hook.posts]
    return [body for body in bodies if "reputation" in body.lower()]


def switch(env: PipelineEnv) -> SqlSendSwitch:
    return SqlSendSwitch(env.settings.database_url)


def test_a_bounce_storm_pauses_sending_and_alerts_once(
    tmp_path: Path, hook: ChatWebhookServer, instance: dg.DagsterInstance
) -> None:
    env = pipeline(tmp_path, hook)
    emails = send_to(env, instance, 25)
    post_events(env, "email.bounced", emails[:2])  # 2 of 25: 8%, the pause line
    check = guard_check(env, instance)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    data = meta(check)
    assert data["level"] == "pause" and data["paused now"] is True
    assert (data["sent"], data["hard bounces"], data["complaints"]) == (25, 2, 0)
    assert data["bounce rate"] == "8.00%" and data["minimum sent"] == MIN_SENT
    assert data["bounce warn / pause"] == "4.00% / 8.00%" and data["alert"] == "posted"
    state = switch(env).state(env.campaign)
    assert state.paused and state.by == "reputation guard"
    assert "bounce rate 8.00% (2 of 25 sent" in state.reason
    assert len(guard_posts(hook)) == 1
    assert "Sending paused" in guard_posts(hook)[0]

    # More events, another evaluation: still paused, no second alert.
    post_events(env, "email.bounced", emails[2:3])
    again = guard_check(env, instance)
    assert not again.passed and meta(again)["paused now"] is False
    assert meta(again)["alert"] == "posted earlier in this episode"
    assert len(guard_posts(hook)) == 1
    # The send path obeys: a newcomer's welcome, due now, does not go while paused.
    env.drop_signup(signup("late@example.com"))
    assert env.ingest(today(), instance).success
    before = env.outbox_files()
    held = env.send(today(), instance, catch_up=True)
    assert held.success and env.outbox_files() == before
    assert not any("late@example.com" in name for name in before)

    # A person resumes: the guard counts afresh from the resume and does not pause again.
    resumed = env.defs.resolve_job_def(env.name("resume_sending")).execute_in_process(
        instance=instance
    )
    assert resumed.success
    after = guard_check(env, instance)
    assert after.passed and meta(after)["level"] == "too_few" and meta(after)["sent"] == 0
    assert not switch(env).state(env.campaign).paused
    assert len(guard_posts(hook)) == 1


def test_below_the_minimum_volume_nothing_happens(
    tmp_path: Path, hook: ChatWebhookServer, instance: dg.DagsterInstance
) -> None:
    env = pipeline(tmp_path, hook)
    emails = send_to(env, instance, MIN_SENT - 1)
    post_events(env, "email.bounced", emails[:10])  # over half bounced, but too few sent
    check = guard_check(env, instance)
    assert check.passed
    assert meta(check)["level"] == "too_few" and meta(check)["hard bounces"] == 10
    assert not switch(env).state(env.campaign).paused
    assert guard_posts(hook) == []


def test_the_warn_line_alerts_once_and_turns_the_check_red_without_pausing(
    tmp_path: Path, hook: ChatWebhookServer, instance: dg.DagsterInstance
) -> None:
    env = pipeline(tmp_path, hook)
    emails = send_to(env, instance, 25)
    post_events(env, "email.bounced", emails[:1])  # 1 of 25: 4%, the warn line
    for _ in range(2):
        check = guard_check(env, instance)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert meta(check)["level"] == "warn" and meta(check)["bounce rate"] == "4.00%"
    assert not switch(env).state(env.campaign).paused
    assert len(guard_posts(hook)) == 1
    assert "Sender reputation warning" in guard_posts(hook)[0]


def test_a_complaint_storm_over_the_gmail_line_pauses(
    tmp_path: Path, hook: ChatWebhookServer, instance: dg.DagsterInstance
) -> None:
    env = pipeline(tmp_path, hook)
    emails = send_to(env, instance, 25)
    post_events(env, "email.complained", emails[:1])  # 1 of 25: 4%, far over 0.3%
    check = guard_check(env, instance)
    data = meta(check)
    assert not check.passed and data["level"] == "pause"
    assert (data["hard bounces"], data["complaints"]) == (0, 1)
    state = switch(env).state(env.campaign)
    assert state.paused and "complaint rate 4.00%" in state.reason
    assert "pause line of 0.30%" in state.reason
    assert len(guard_posts(hook)) == 1
