"""Each campaign operable on its own: the reputation guard judges every running campaign on
its own mail and pauses only the one in trouble, telling ops once per campaign; a failed
run of a campaign that is not the default reaches ops through that campaign's outbox,
naming it, and a global run's failure still does while the default's folder is broken."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.adapters.sql.alerts import SqlAlertOutbox
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.jobs import SEND_TAG
from xmas_pipeline_tests.dagster.test_campaigns_runtime import NEW, OLD, campaigns_dir, sent_by
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today
from xmas_pipeline_tests.support.sensor_ticks import Ticker

MIN_SENT = 20  # XMAS_REPUTATION_MIN_SENT: small, so a storm needs few emails
PEOPLE = 25


@pytest.fixture
def env(tmp_path: Path, chat: ChatWebhookServer) -> PipelineEnv:
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGNS_DIR=str(campaigns_dir(tmp_path / "campaigns", OLD, NEW)),
        XMAS_ALERT_WEBHOOK_URL=chat.url,
        XMAS_REPUTATION_MIN_SENT=str(MIN_SENT),
    )


def loaded(env: PipelineEnv, slug: str) -> Campaign:
    return env.settings.campaigns().loaded[slug]


def welcome_all(env: PipelineEnv, instance: dg.DagsterInstance) -> dict[str, list[dict[str, Any]]]:
    """`PEOPLE` signups in each campaign, welcomed: each campaign's sent emails."""
    for slug in (OLD, NEW):
        for i in range(PEOPLE):
            env.drop_signup(signup(f"{slug}-{i}@example.com"), campaign=slug)
    assert env.ingest(today(), instance).success
    sent: dict[str, list[dict[str, Any]]] = {}
    for slug in (OLD, NEW):
        assert env.send(today(), instance, campaign=slug, catch_up=True).success
        log = env.store().sent_log(loaded(env, slug), "2000-01-01", "2999-12-31")
        assert len(log) == PEOPLE and (log["provider_id"] != "").all()
        sent[slug] = log.to_dict("records")
    return sent


def bounce(env: PipelineEnv, slug: str, emails: list[dict[str, Any]]) -> None:
    """Resend's hard-bounce event for each email, with the tags it was sent with."""
    at = datetime.now(UTC).isoformat()
    for email in emails:
        env.inbox.write_json(
            "email-events",
            {
                "type": "email.bounced",
                "created_at": at,
                "data": {
                    "email_id": email["provider_id"],
                    "created_at": at,
                    "to": [email["contact_key"]],
                    "bounce": {"type": "Permanent", "message": "550 5.1.1 user unknown"},
                    "tags": {"campaign": slug, "step": "email-1"},
                },
            },
        )


def guard_check(env: PipelineEnv, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    job = env.defs.resolve_job_def("ingest_email_events")
    result = job.execute_in_process(partition_key=today(), instance=instance)
    assert result.success
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "sender_reputation"
    ]
    return check


def meta(check: dg.AssetCheckEvaluation) -> dict[str, Any]:
    return {k: v.value for k, v in check.metadata.items()}


def guard_posts(chat: ChatWebhookServer) -> list[str]:
    bodies = [json.dumps(post.body) for post in chat.accepted]
    return [body for body in bodies if "reputation" in body.lower()]


def paused(env: PipelineEnv, slug: str) -> bool:
    return SqlSendSwitch(env.settings.database_url).state(loaded(env, slug)).paused


def outbox_keys(env: PipelineEnv, slug: str) -> list[str]:
    outbox = SqlAlertOutbox(env.settings.database_url, loaded(env, slug))
    return [row["alert_key"] for row in outbox.history()]


def test_a_bounce_storm_in_one_campaign_pauses_that_campaign_alone(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    with in_memory_instance() as instance:
        sent = welcome_all(env, instance)
        bounce(env, NEW, sent[NEW][:2])  # 2 of 25: 8%, the pause line
        check = guard_check(env, instance)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert (check.description or "").startswith(f"Alarming: {NEW}.")
        assert OLD not in (check.description or "")
        data = meta(check)
        # The top-level keys are the worst campaign's; the table has both.
        assert data["campaign"] == NEW and data["alarming"] == NEW
        assert data["level"] == "pause" and data["paused now"] is True
        assert (data["sent"], data["hard bounces"], data["bounce rate"]) == (PEOPLE, 2, "8.00%")
        assert data["alert"] == "posted"
        table = data["campaigns"]
        assert f"| {NEW} | pause | 8.00% | 0.00% | 25 | 2 | 0 | paused now | posted |" in table
        assert f"| {OLD} | ok | 0.00% | 0.00% | 25 | 0 | 0 | no | none needed |" in table

        assert paused(env, NEW) and not paused(env, OLD)
        state = SqlSendSwitch(env.settings.database_url).state(loaded(env, NEW))
        assert state.by == "reputation guard" and "bounce rate 8.00% (2 of 25" in state.reason
        [post] = guard_posts(chat)
        assert "Sending paused for Christmas 2026" in post
        assert "christmas_2026__resume_sending" in post and "Christmas 2025" not in post
        assert [k for k in outbox_keys(env, NEW) if k.startswith("reputation:")] == [
            "reputation:start:0:pause"
        ]
        assert not [k for k in outbox_keys(env, OLD) if k.startswith("reputation:")]

        # Judged again: still one alert; the default campaign sends, the paused one holds.
        assert meta(guard_check(env, instance))["alert"] == "posted earlier in this episode"
        assert len(guard_posts(chat)) == 1
        for slug in (OLD, NEW):
            env.drop_signup(signup(f"late-{slug}@example.com"), campaign=slug)
        assert env.ingest(today(), instance).success
        for slug in (OLD, NEW):
            assert env.send(today(), instance, campaign=slug, catch_up=True).success
    assert f"{OLD}__late-{OLD}@example.com__email-1.eml" in sent_by(env, OLD)
    assert not any("late-" in name for name in sent_by(env, NEW))


def test_storms_in_both_campaigns_pause_both_and_alert_for_each(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    with in_memory_instance() as instance:
        sent = welcome_all(env, instance)
        bounce(env, NEW, sent[NEW][:2])  # 8%: pause
        bounce(env, OLD, sent[OLD][:3])  # 12%: pause
        check = guard_check(env, instance)
        assert not check.passed
        assert (check.description or "").startswith(f"Alarming: {OLD}, {NEW}.")
        data = meta(check)
        assert data["alarming"] == f"{OLD}, {NEW}"
        # Equal levels: the default campaign's figures at the top.
        assert data["campaign"] == OLD and data["hard bounces"] == 3
        assert paused(env, OLD) and paused(env, NEW)
        posts = guard_posts(chat)
        assert len(posts) == 2
        assert sum("Sending paused for Christmas 2025" in p for p in posts) == 1
        assert sum("Sending paused for Christmas 2026" in p for p in posts) == 1
        # Each campaign's alert is in its own outbox, under the key the default always had.
        for slug in (OLD, NEW):
            keys = [k for k in outbox_keys(env, slug) if k.startswith("reputation:")]
            assert keys == ["reputation:start:0:pause"]
        guard_check(env, instance)
        assert len(guard_posts(chat)) == 2  # once per campaign and episode

        # A person resumes one campaign: only its count starts again.
        resume = env.defs.resolve_job_def(env.name("resume_sending", NEW))
        assert resume.execute_in_process(instance=instance).success
        after = guard_check(env, instance)
        assert not after.passed and meta(after)["alarming"] == OLD
        assert f"| {NEW} | too_few | 0.00% | 0.00% | 0 |" in meta(after)["campaigns"]
        assert paused(env, OLD) and not paused(env, NEW)


def test_the_guard_passes_when_every_campaign_is_within_limits(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    with in_memory_instance() as instance:
        welcome_all(env, instance)
        check = guard_check(env, instance)
    assert check.passed
    assert (check.description or "").startswith("Every campaign within limits.")
    data = meta(check)
    assert data["alarming"] == "none" and data["campaign"] == OLD and data["level"] == "ok"
    assert not paused(env, OLD) and not paused(env, NEW)
    assert guard_posts(chat) == []


def test_a_failed_send_run_of_the_second_campaign_reaches_ops_naming_it(
    tmp_path: Path, chat: ChatWebhookServer
) -> None:
    """Christmas 2026's send run fails for real (Resend on, no postal address): the alert
    goes to its campaign's outbox, names the campaign, and alert_outbox_sensor posts it."""
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGNS_DIR=str(campaigns_dir(tmp_path / "campaigns", OLD, NEW)),
        XMAS_ALERT_WEBHOOK_URL=chat.url,
        RESEND_API_KEY="re_test_key_123456",
        XMAS_PUBLIC_URL="https://campaign.example.com",
    )
    env.drop_signup(signup("a@x.com"), campaign=NEW)
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        failures()
        assert env.ingest(today(), instance).success
        run = env.send(today(), instance, campaign=NEW, catch_up=True)
        assert not run.success
        assert "1 alert(s) added" in str(failures().skip_message)
        assert f"run-failed:{run.run_id}" in outbox_keys(env, NEW)
        assert outbox_keys(env, OLD) == []
        assert f"{NEW}: 1 alert(s) posted" in str(
            Ticker.of(env, instance, "alert_outbox_sensor")().skip_message
        )
    [post] = chat.accepted
    text = post.body["text"]
    assert "A send run failed" in text and run.run_id in text
    assert "christmas_2026__send_due_emails" in text and "Campaign: Christmas 2026" in text
    assert "XMAS_POSTAL_ADDRESS is not set" in text


def _failed_run(instance: dg.DagsterInstance, job: str, reason: str, **tags: str) -> str:
    run = dg.DagsterRun(
        job_name=job, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED, tags=tags
    )
    instance.add_run(run)
    instance.report_run_failed(run, reason)
    return run.run_id


def test_run_failures_reach_ops_while_the_default_folder_is_broken(
    tmp_path: Path, chat: ChatWebhookServer
) -> None:
    """The default campaign's folder broken: a failed global run's alert goes to the first
    loaded campaign's outbox, and a campaign's failed send run to its own."""
    folders = campaigns_dir(tmp_path / "campaigns", NEW)
    (folders / OLD).mkdir()
    (folders / OLD / "campaign.yaml").write_text("slug: christmas-2025\nsteps: [\n")
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGNS_DIR=str(folders),
        XMAS_ALERT_WEBHOOK_URL=chat.url,
    )
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        ingest = _failed_run(instance, "ingest_signups", "boom")
        send = _failed_run(
            instance, "christmas_2026__send_due_emails", "refused", **{SEND_TAG: "1"}
        )
        assert "2 alert(s) added" in str(failures().skip_message)
        assert sorted(outbox_keys(env, NEW)) == sorted(
            [f"run-failed:{ingest}", f"run-failed:{send}"]
        )
        Ticker.of(env, instance, "alert_outbox_sensor")()
    texts = sorted(post.body["text"] for post in chat.accepted)
    assert len(texts) == 2
    assert any("after its retries" in t and "Campaign:" not in t for t in texts)
    assert any("A send run failed" in t and "Campaign: Christmas 2026" in t for t in texts)
