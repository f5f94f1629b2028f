"""`signups_close` through the real Definitions, in process: a signup before the close is
enrolled and emailed; one after it is kept in the inbox but starts no sequence and gets no
email (nor, with double opt-in, a confirmation email), and the run counts it; a person
enrolled before the close who signs up again after it is refreshed as before; the intake
answers `enrolled: false`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    campaign_file_with,
    make_env,
    materializations,
    signup,
    today,
)

CLOSED = "signups after close (campaign closed)"
# A signup this old arrived on the close day (below); one arriving now, after its end.
BEFORE = timedelta(days=3)


def close_day() -> str:
    """The day signups closed: the day, in the campaign's zone, of a signup `BEFORE` old.
    Its end is at most two days ago, so a signup now is after the close."""
    then = datetime.now(UTC) - BEFORE
    return then.astimezone(ZoneInfo("America/Toronto")).date().isoformat()


def env_for(tmp_path: Path, double_opt_in: bool = False) -> PipelineEnv:
    path = campaign_file_with(
        tmp_path / "campaign",
        send_window=None,
        min_gap="0s",
        double_opt_in=double_opt_in,
        signups_close=close_day(),
    )
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGN_FILE=path,
        XMAS_UNSUBSCRIBE_SECRET="test-signing-secret",
    )


def sent_to(env: PipelineEnv, key: str) -> list[str]:
    return [name for name in env.outbox_files() if f"__{key}__" in name]


def test_before_the_close_enrolled_after_it_kept_but_not_enrolled(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    early, late = "early@example.com", "late@example.com"
    env.drop_signup(signup(early), age=BEFORE)
    late_file = env.drop_signup(signup(late))
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
        assert ingested.success
        [meta] = materializations(ingested, "email_sequences")
        assert meta["new sequences"] == 1 and meta[CLOSED] == 1
        assert late not in str(meta)  # a count, never an address
        assert env.send(today(), instance, catch_up=True).success
    assert f"christmas-2025__{early}__email-1.eml" in sent_to(env, early)
    assert sent_to(env, late) == []
    keys = env.store().load_sequences(env.campaign)["contact_key"].tolist()
    assert keys == [early]
    # The late signup's file is still in the inbox (its consent record).
    assert late_file.name in {f.name for f in env.inbox.files("signups", today())}


def test_someone_enrolled_before_the_close_retakes_after_it(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    key = "known@example.com"
    env.drop_signup(signup(key, red=3), age=BEFORE)
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        [before] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
        env.drop_signup(signup(key, red=0, orange=1))  # after the close
        ingested = env.ingest(today(), instance)
        [meta] = materializations(ingested, "email_sequences")
        assert meta[CLOSED] == 0 and meta["refreshed"] == 1 and meta["new sequences"] == 0
        assert env.send(today(), instance, catch_up=True).success
    [after] = env.store().load_sequences(env.campaign, [key]).to_dict("records")
    assert (after["red_systems"], after["orange_systems"]) == (0, 1)  # scores updated
    assert after["signup_at"] == before["signup_at"]  # the running sequence keeps its clock
    assert not after["completed"]
    assert f"christmas-2025__{key}__email-1.eml" in sent_to(env, key)


def test_with_opt_in_a_closed_signup_gets_no_confirmation(tmp_path: Path) -> None:
    env = env_for(tmp_path, double_opt_in=True)
    key = "late@example.com"
    intake = TestClient(create_app(env.settings))
    posted = intake.post("/webhook/christmas-signup", json=signup(key))
    assert posted.status_code == 202
    answer = posted.json()
    assert answer["status"] == "accepted"
    assert answer["enrolled"] is False and answer["reason"] == "campaign closed"
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
        [meta] = materializations(ingested, "email_sequences")
        assert meta[CLOSED] == 1 and meta["new sequences"] == 0
        assert meta["confirmation emails owed"] == 0
        assert env.send(today(), instance, catch_up=True).success
    assert sent_to(env, key) == []
    assert env.store().load_sequences(env.campaign).empty
    # The inbox file and its request sidecar (the consent details) are kept.
    [item] = env.inbox.files("signups", today())
    assert item.name == f"{answer['event_id']}.json"
    assert env.inbox.request_of(item)["user_agent"]


def test_an_open_campaign_answers_as_before(tmp_path: Path) -> None:
    path = campaign_file_with(tmp_path / "campaign", signups_close="2099-12-24")
    env = make_env(tmp_path / "home", XMAS_CAMPAIGN_FILE=path)
    answer = TestClient(create_app(env.settings)).post(
        "/webhook/christmas-signup", json=signup("jane@example.com")
    )
    assert answer.status_code == 202 and "enrolled" not in answer.json()
