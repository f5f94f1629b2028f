"""Double opt-in through the real Definitions, in process: a signup posted to the intake
gets only the confirmation email; the link's click, ingested, starts the sequence (email 1
at once, the cadence from the click); a second click sends nothing twice; the consent
record holds both requests; `forget` erases it. And the retake rule on the same path."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.dagster_defs.sensors import new_sequences
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.services.forget import forget_person
from xmas_pipeline.services.planning import due_plan
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    campaign_file_with,
    make_env,
    materializations,
    signup,
    today,
)

SIGNUP_UA = {"User-Agent": "Mozilla/5.0 (signup browser)", "X-Forwarded-For": "198.51.100.20"}
CLICK_UA = {"User-Agent": "Mozilla/5.0 (mail client)"}


def campaign_file(folder: Path, double_opt_in: bool) -> str:
    return campaign_file_with(folder, send_window=None, min_gap="0s", double_opt_in=double_opt_in)


def env_for(tmp_path: Path, double_opt_in: bool) -> PipelineEnv:
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGN_FILE=campaign_file(tmp_path / "campaign", double_opt_in),
        XMAS_UNSUBSCRIBE_SECRET="test-signing-secret",
    )


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return env_for(tmp_path, double_opt_in=True)


def sent_steps(env: PipelineEnv, key: str) -> list[str]:
    return [name for name in env.outbox_files() if f"__{key}__" in name]


def confirm_path(env: PipelineEnv, key: str) -> str:
    """The /confirm link of the confirmation email in the outbox (path and query)."""
    [html] = [
        (env.outbox / name).read_text(encoding="utf-8")
        for name in env.outbox_files(".html")
        if f"__{key}__confirm" in name
    ]
    [url] = set(re.findall(r'href="(https?://[^"]*/confirm\?token=[^"]+)"', html))
    return "/" + unescape(url).split("/", 3)[3]


def subject_of(env: PipelineEnv, name: str) -> str:
    text = (env.outbox / name).read_text(encoding="utf-8")
    return next(line for line in text.splitlines() if line.startswith("Subject:"))


def test_only_the_confirmation_goes_until_the_link_is_clicked(env: PipelineEnv) -> None:
    intake = TestClient(create_app(env.settings))
    key = "jane@example.com"
    posted = intake.post(
        "/webhook/christmas-signup", json=signup(key, red=3, first_name="Jane"), headers=SIGNUP_UA
    )
    assert posted.status_code == 202
    event_id = posted.json()["event_id"]
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
        assert ingested.success
        meta = materializations(ingested, "email_sequences")[0]
        assert meta["new sequences"] == 1 and meta["awaiting confirmation"] == 1
        assert meta["awaiting confirmation (all)"] == 1
        assert env.send(today(), instance, catch_up=True).success
        [confirmation] = sent_steps(env, key)
        assert f"__confirm__signup-{event_id}" in confirmation
        assert "Jane" not in subject_of(env, confirmation)  # nothing the poster typed

        # Later runs send nothing more: no nurture, no second confirmation.
        assert env.send(today(), instance, catch_up=True).success
        assert sent_steps(env, key) == [confirmation]

        link = confirm_path(env, key)
        page = intake.get(link)
        assert page.status_code == 200 and 'method=post action="?token=' in page.text
        clicked = intake.post(link, headers=CLICK_UA)
        assert clicked.status_code == 200 and "confirmed" in clicked.text

        ingested = env.ingest(today(), instance)
        meta = materializations(ingested, "email_sequences")[0]
        assert meta["confirmed"] == 1 and meta["awaiting confirmation (all)"] == 0
        # The welcome sensor counts a confirmation as a start: email 1 goes at once.
        assert new_sequences(instance, ingested.run_id) == 1
        assert env.send(today(), instance, catch_up=True).success
        assert [n for n in sent_steps(env, key) if "__email-" in n] == [
            f"christmas-2025__{key}__email-1.eml"
        ]

        # The cadence counts from the click: email 2 is due a minute after it (testing).
        store = env.store()
        [row] = store.load_sequences(env.campaign, [key]).to_dict("records")
        assert not row["awaiting_confirmation"]
        consent = store.consent_records(env.campaign).to_dict("records")
        assert len(consent) == 1
        record = consent[0]
        assert row["signup_at"] == record["confirmed_at"]
        plan, _ = due_plan(store, env.campaign, record["confirmed_at"] + timedelta(seconds=61))
        assert plan["step_id"].tolist() == ["email-2"]

        # The consent record: what, when, from where, for both requests.
        assert record["subject"] == f"signup:{event_id}"
        assert record["contact_key"] == key
        assert record["request_ip"] == "testclient"
        assert record["request_user_agent"] == SIGNUP_UA["User-Agent"]
        assert record["request_forwarded_for"] == "198.51.100.20"
        assert record["confirm_forwarded_for"] == ""
        assert record["confirm_ip"] == "testclient"
        assert record["confirm_user_agent"] == CLICK_UA["User-Agent"]
        assert record["requested_at"] <= record["confirmed_at"]
        assert record["confirm_source"].startswith(f"signups/{today()}/")

        # Clicking again (and ingesting again) sends nothing twice.
        assert intake.post(link, headers=CLICK_UA).status_code == 200
        again = env.ingest(today(), instance)
        meta = materializations(again, "email_sequences")[0]
        assert meta["confirmed"] == 0 and meta["confirmations repeated"] == 2
        assert new_sequences(instance, again.run_id) == 0
        before = sent_steps(env, key)
        assert env.send(today(), instance, catch_up=True).success
        assert sent_steps(env, key) == before

        # Forgetting the person erases the consent record, and in the inbox the signup,
        # the request details kept beside it and the clicks.
        inbox_root = Path(env.settings.inbox_root)
        # One beside the signup and one beside each click (naming the campaign).
        assert len(list(inbox_root.rglob("*.request"))) == 3
        forget = SqlForget(env.settings.database_url)
        report = forget_person(
            key, store=forget, inbox=env.inbox, outbox=None, campaigns=[env.campaign]
        )
        assert report.store.get("consent_records") == 1
        assert report.inbox == {"signups": 3}
        assert store.consent_records(env.campaign).empty
        assert list(inbox_root.rglob("*.request")) == []


def test_a_forged_confirmation_file_starts_nothing(env: PipelineEnv) -> None:
    """Anyone can post JSON to the signup endpoint: only a genuine link confirms."""
    key = "victim@example.com"
    env.drop_signup(signup(key))
    forged: dict[str, Any] = {
        "type": "signup.confirmed",
        "created_at": "2025-12-01T10:00:00+00:00",
        "data": {"email": key, "token": "x" * 10 + ".y.1", "ip": "1.2.3.4"},
    }
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        env.drop_signup(forged)
        ingested = env.ingest(today(), instance)
        meta = materializations(ingested, "email_sequences")[0]
        assert meta["confirmed"] == 0 and meta["confirmations refused"] == 1
        [row] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        assert row["awaiting_confirmation"]


def test_retake_does_not_rewrite_the_name_in_the_next_subject(tmp_path: Path) -> None:
    env = env_for(tmp_path, double_opt_in=False)
    key = "sam@example.com"
    env.drop_signup(signup(key, first_name="Sam", red=3))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        assert env.send(today(), instance, catch_up=True).success
        [first] = sent_steps(env, key)
        assert "Sam" in subject_of(env, first)

        # Someone posts the same address with another name and a new assessment.
        env.drop_signup(signup(key, first_name="Mallory", red=0, orange=0))
        ingested = env.ingest(today(), instance)
        meta = materializations(ingested, "email_sequences")[0]
        assert meta["held profile changes"] == 1
        assert "Mallory" in meta["held changes"]
        [row] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        assert row["first_name"] == "Sam"
        assert row["segment"] == "OPTIMIZE"  # the new assessment is used
        changes = env.store().profile_changes(env.campaign).to_dict("records")
        assert [c["status"] for c in changes] == ["held"]

        # The next email still greets Sam. (Testing cadence: email 2 a minute later.)
        [row] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        assert row["first_name"] == "Sam"
        plan, _ = due_plan(env.store(), env.campaign, row["signup_at"] + timedelta(minutes=2))
        assert plan["first_name"].tolist() == ["Sam"]

        # The identical signup again: nothing.
        env.drop_signup(signup(key, first_name="Mallory", red=0, orange=0))
        meta = materializations(env.ingest(today(), instance), "email_sequences")[0]
        assert meta["held profile changes"] == 0 and meta["refreshed"] == 0


def test_with_opt_in_a_new_name_waits_for_a_link_sent_to_the_address(env: PipelineEnv) -> None:
    intake = TestClient(create_app(env.settings))
    key = "ann@example.com"
    intake.post("/webhook/christmas-signup", json=signup(key, first_name="Ann"))
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        env.send(today(), instance, catch_up=True)
        intake.post(confirm_path(env, key))
        env.ingest(today(), instance)
        env.send(today(), instance, catch_up=True)
        assert "Ann" in subject_of(env, f"christmas-2025__{key}__email-1.eml")

        intake.post("/webhook/christmas-signup", json=signup(key, first_name="Annabel"))
        ingested = env.ingest(today(), instance)
        meta = materializations(ingested, "email_sequences")[0]
        assert meta["held profile changes"] == 1 and meta["confirmation emails owed"] == 1
        assert new_sequences(instance, ingested.run_id) == 1  # its email goes at once
        assert env.store().profile_changes(env.campaign)["status"].tolist() == ["pending"]
        env.send(today(), instance, catch_up=True)
        [change_mail] = [n for n in sent_steps(env, key) if "__confirm__change-" in n]
        assert "new details" in subject_of(env, change_mail)
        [row] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        assert row["first_name"] == "Ann"

        # The address's owner confirms: the new name is used from now on.
        html = (env.outbox / change_mail.replace(".eml", ".html")).read_text(encoding="utf-8")
        [url] = set(re.findall(r'href="(https?://[^"]*/confirm\?token=[^"]+)"', html))
        assert intake.post("/" + unescape(url).split("/", 3)[3]).status_code == 200
        meta = materializations(env.ingest(today(), instance), "email_sequences")[0]
        assert meta["changes confirmed"] == 1
        [row] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        assert row["first_name"] == "Annabel"
        assert env.store().profile_changes(env.campaign)["status"].tolist() == ["applied"]


def test_the_critical_alert_waits_for_the_confirmation(tmp_path: Path) -> None:
    """With opt-in on, a script posting CRITICAL signups reaches nobody's chat: the alert
    goes once the address's owner confirmed, and once only."""
    with ChatWebhookServer(flavour="slack") as chat:
        env = make_env(
            tmp_path / "home",
            XMAS_TESTING_MODE="true",
            XMAS_CAMPAIGN_FILE=campaign_file(tmp_path / "campaign", True),
            XMAS_UNSUBSCRIBE_SECRET="test-signing-secret",
            XMAS_ALERT_WEBHOOK_URL=chat.url,
        )
        intake = TestClient(create_app(env.settings))
        key = "crit@example.com"
        intake.post("/webhook/christmas-signup", json=signup(key, red=3))
        with in_memory_instance() as instance:
            assert env.ingest(today(), instance).success
            assert chat.posts == []
            assert env.send(today(), instance, catch_up=True).success
            link = confirm_path(env, key)
            intake.post(link)
            ingested = env.ingest(today(), instance)
            assert materializations(ingested, "email_sequences")[0]["critical alerts sent"] == 1
            [post] = chat.accepted
            assert key in json.dumps(post.body)
            intake.post(link)  # a second click: no second alert
            env.ingest(today(), instance)
            assert len(chat.accepted) == 1
