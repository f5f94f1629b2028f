"""Hostile zones and names through a real Dagster instance: the Cal.com poller keeps
polling past a booking whose zone is a folder of the zone database, a signup file with a
line-break character in a name is rejected with its reason, and a contact whose stored
name holds such characters (a row an older release wrote) still gets a clean subject."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.tables import sequences
from xmas_pipeline.core.safe_text import first_unsafe
from xmas_pipeline.dagster_defs.resources import CalcomResource, InboxResource
from xmas_pipeline_tests.fakes.calcom_api import DEFAULT_API_KEY, FakeCalcomApi
from xmas_pipeline_tests.support.calcom_payloads import api_booking
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
HOSTILE = "\x85\u2028\u202e\u2066\ufeff\u200e"


def read_eml(env: PipelineEnv, name: str) -> email.message.EmailMessage:
    raw = (env.outbox / name).read_bytes()
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_the_poller_survives_a_folder_zone_and_a_hostile_name(tmp_path: Path) -> None:
    with FakeCalcomApi() as fake:
        env = make_env(tmp_path / "home", CALCOM_API_KEY=DEFAULT_API_KEY, CALCOM_API_URL=fake.url)
        fake.put(
            api_booking(
                "bkHostile1",
                START,
                created=NOW - H,
                name=f"Ja{HOSTILE}ne Doe",
                time_zone="America",
            ),
            api_booking("bkLong1", START, created=NOW - H, email="sam@example.com",
                        time_zone="x" * 300),
        )  # fmt: skip
        sensor = env.defs.resolve_sensor_def("calcom_poll_sensor")
        resources = {
            "inbox": InboxResource(root=str(env.settings.inbox_root)),
            "calcom": CalcomResource(api_key=DEFAULT_API_KEY, api_url=fake.url),
        }
        with in_memory_instance() as instance:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            first = sensor(context)
            assert "2 new booking" in first.skip_message
            again = dg.build_sensor_context(
                instance=instance, cursor=context.cursor, resources=resources
            )
            assert "no booking changes" in sensor(again).skip_message
            ingest = env.defs.resolve_job_def("ingest_bookings").execute_in_process(
                partition_key=today(), instance=instance, raise_on_error=False
            )
            assert ingest.success
            assert check_results(ingest) == {"no_rejected_files": True}
            sent = env.send(today(), instance, catch_up=True)
            assert sent.success
    bookings = env.store().load_bookings(env.campaign).set_index("booking_uid")
    assert bookings.loc["bkHostile1", "time_zone"] == "UTC"
    assert bookings.loc["bkLong1", "time_zone"] == "UTC"
    name = "christmas-2025__jane@example.com__reminder-1__bkHostile1.eml"
    assert name in env.outbox_files()
    message = read_eml(env, name)
    subject = str(message["Subject"])
    assert subject == "Ja, your diagnostic call is booked: how to prepare"
    assert first_unsafe(subject) is None
    assert "(UTC)" in message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_a_signup_file_with_a_line_break_character_is_rejected_with_its_reason(
    tmp_path: Path,
) -> None:
    env = make_env(tmp_path / "home", XMAS_TESTING_MODE="true")
    env.drop_signup(signup("ok@x.com", red=2))
    env.drop_signup(json.dumps(signup("nel@x.com", first_name="Ja\x85ne")).encode())
    with in_memory_instance() as instance:
        result = env.ingest(today(), instance)
    assert result.success
    meta = materializations(result, "signups")[0]
    assert meta["accepted"] == 1 and meta["rejected"] == 1
    assert "first_name" in meta["rejected files"] and "U+0085" in meta["rejected files"]
    assert check_results(result) == {
        "no_rejected_files": False,
        "every_signup_campaign_loaded": True,
    }


def test_a_stored_name_with_hostile_characters_still_goes_out_with_a_clean_subject(
    tmp_path: Path,
) -> None:
    env = make_env(tmp_path / "home", XMAS_TESTING_MODE="true")
    env.drop_signup(signup("old@x.com", red=2, first_name="Jane"))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        # An older release checked less: its rows may hold any of these.
        store = env.store()
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(sequences)
                .where(sequences.c.contact_key == "old@x.com")
                .values(
                    first_name=f"Ja{HOSTILE}ne\x0b",
                    business_name=f"Acme{HOSTILE}Ltd",
                    weakest_system_1=f"Sales\u2029{HOSTILE}",
                    time_zone="America",
                )
            )
        store.dispose()
        sent = env.send(today(), instance, catch_up=True)
    assert sent.success
    meta = materializations(sent, "deliveries")[0]
    assert (meta["sent"], meta["failed"]) == (1, 0)
    [name] = env.outbox_files()
    subject = str(read_eml(env, name)["Subject"])
    assert subject == "Ja ne , your December readiness score is 47/100"
    sequences_now = env.store().load_sequences(env.campaign)
    assert not sequences_now.iloc[0]["completed"]
    assert not str(sequences_now.iloc[0].get("exit_reason") or "")
