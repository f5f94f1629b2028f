"""A provider refusal through a real send run (Dagster, the store, the Resend fake): one bad
recipient ends only its own sequence; a reply-to Resend refuses for every email stops the
run with the reason, ends no sequence, and once it is fixed the next run sends them all."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)

PEOPLE = [f"reader{n}@example.com" for n in range(5)]


def _resend_env(home: Path, fake: FakeResendAPI, **env: str) -> PipelineEnv:
    values = {
        "XMAS_TESTING_MODE": "true",
        "RESEND_API_KEY": DEFAULT_API_KEY,
        "RESEND_API_URL": fake.base_url,
        "XMAS_POSTAL_ADDRESS": "BusOS Ltd, 1 King St W, Toronto ON",
        "XMAS_PUBLIC_URL": "https://campaign.example.com",
        **env,
    }
    return make_env(home, **values)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return str(failure.event_specific_data.error.message)  # type: ignore[union-attr]


def _ended(env: PipelineEnv) -> dict[str, str]:
    sequences = env.store().load_sequences(env.campaign)
    return {
        row["contact_key"]: str(row["exit_reason"])
        for row in sequences.to_dict("records")
        if row["completed"]
    }


def test_a_reply_to_resend_refuses_stops_the_run_and_ends_no_sequence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_fake(rate_limit=None) as fake, in_memory_instance() as instance:
        env = _resend_env(home, fake, XMAS_REPLY_TO="Sam <sam@busos.x>")
        for address in PEOPLE:
            env.drop_signup(signup(address))
        assert env.ingest(today(), instance).success

        result = env.send(today(), instance, catch_up=True)
        assert not result.success
        message = _failure_message(result)
        assert "Sending stopped" in message and "Invalid `reply_to` field" in message
        assert "the rest stay due" in message and DEFAULT_API_KEY not in message
        assert fake.accepted == []
        assert _ended(env) == {}  # no sequence ended: every welcome is still due

        # The reply-to fixed: the next run sends every welcome, rendered anew.
        fixed = _resend_env(home, fake, XMAS_REPLY_TO="Sam <sam@busos.example.com>")
        again = fixed.send(today(), instance, catch_up=True)
        assert again.success
        assert materializations(again, "deliveries")[0]["sent"] == len(PEOPLE)
        assert sorted(fake.deliveries()) == PEOPLE
        assert {tuple(mail.reply_to) for mail in fake.accepted} == {
            ("Sam <sam@busos.example.com>",)
        }


def test_one_bad_recipient_ends_only_its_own_sequence(tmp_path: Path) -> None:
    bad = "jane@example.c"  # a signup's check takes it; Resend does not
    with running_fake(rate_limit=None) as fake, in_memory_instance() as instance:
        env = _resend_env(tmp_path / "home", fake)
        for address in [*PEOPLE[:2], bad, *PEOPLE[2:]]:
            env.drop_signup(signup(address))
        assert env.ingest(today(), instance).success
        result = env.send(today(), instance, catch_up=True)
        assert result.success
        meta = materializations(result, "deliveries")[0]
        assert (meta["sent"], meta["failed"]) == (len(PEOPLE), 0 + 1)
        assert "Invalid `to` field" in meta["problems"]
    assert sorted(fake.deliveries()) == PEOPLE
    ended = _ended(env)
    assert list(ended) == [bad]
    assert ended[bad].startswith("failed: 422 validation_error: Invalid `to` field")
