"""Inbox retention: `prune_inbox` removes day folders past XMAS_INBOX_RETENTION_DAYS only
once they were ingested, after their last file arrived; everything else stays."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from xmas_pipeline.adapters.inbox import utc_day
from xmas_pipeline.core.campaign_set import CAMPAIGN_FIELD
from xmas_pipeline.dagster_defs.retention import RETENTION_JOB
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today


def drop(env: PipelineEnv, kind: str, body: dict, at: datetime, *, old_mtime: bool = True) -> str:
    item = env.inbox.write(kind, json.dumps(body).encode(), received_at=at)
    if old_mtime:  # the folder inbox's arrival time is the file's modification time
        os.utime(item.path, (at.timestamp(), at.timestamp()))
    return item.day


def ingest(env: PipelineEnv, day: str, instance: dg.DagsterInstance) -> None:
    assert env.ingest(day, instance).success


def test_retention_removes_only_old_ingested_days(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home", XMAS_INBOX_RETENTION_DAYS="30")
    now = datetime.now(UTC)
    with in_memory_instance() as instance:
        old = drop(env, "signups", signup("old@x.com"), now - timedelta(days=40))
        ingest(env, old, instance)
        never = drop(env, "signups", signup("never@x.com"), now - timedelta(days=41))
        late = drop(env, "signups", signup("late1@x.com"), now - timedelta(days=45))
        ingest(env, late, instance)
        # Arrived in that old day's folder after its ingestion: not in the store yet.
        drop(env, "signups", signup("late2@x.com"), now - timedelta(days=45), old_mtime=False)
        booking = webhook_created("bkOld", now, at=now - timedelta(days=40), email="b@x.com")
        drop(env, "bookings", booking, now - timedelta(days=40))  # its kind never ingested
        recent = drop(env, "signups", signup("new@x.com"), now - timedelta(days=2))
        ingest(env, recent, instance)
        ingest(env, today(), instance)

        result = env.defs.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance)

    assert result.success
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in event.step_output_data.metadata.items()}
    assert meta["files removed signups"] == 1 and meta["days removed"] == 1
    assert meta["retention (days)"] == 30
    assert f"signups/{never}" in meta["days kept"] and "never ingested" in meta["days kept"]
    assert (
        f"signups/{late}" in meta["days kept"] and "after its last ingestion" in meta["days kept"]
    )
    assert f"bookings/{old}" in meta["days kept"]
    assert env.inbox.days("signups") == sorted([never, late, recent])
    assert len(env.inbox.files("signups", late)) == 2
    assert env.inbox.days("bookings") == [old]
    assert not (Path(env.settings.inbox_root) / "signups" / old).exists()
    # What was removed had been ingested: the person is still in the store.
    assert "old@x.com" in set(env.store().load_sequences(env.campaign)["contact_key"])
    assert utc_day(now - timedelta(days=40)) == old


def test_retention_keeps_a_day_holding_a_file_for_a_campaign_not_loaded(
    tmp_path: Path,
) -> None:
    """Ingestion keeps a signup or an email event for a campaign that is not loaded
    waiting in the inbox: retention never removes its day, ingested or not."""
    env = make_env(tmp_path / "home", XMAS_INBOX_RETENTION_DAYS="30")
    now = datetime.now(UTC)
    at = now - timedelta(days=40)
    waiting = env.inbox.write(
        "signups",
        json.dumps(signup("later@x.com")).encode(),
        received_at=at,
        request={CAMPAIGN_FIELD: "easter-2027"},
    )
    os.utime(waiting.path, (at.timestamp(), at.timestamp()))
    drop(env, "signups", signup("now@x.com"), at)
    sent = now - timedelta(days=50)
    event = {
        "type": "email.opened",
        "created_at": sent.isoformat(),
        "data": {"email_id": "re_1", "to": ["x@x.com"], "tags": {"campaign": "easter-2027"}},
    }
    event_day = drop(env, "email-events", event, sent)
    with in_memory_instance() as instance:
        ingest(env, waiting.day, instance)
        events = env.defs.resolve_job_def("ingest_email_events")
        assert events.execute_in_process(partition_key=event_day, instance=instance).success
        result = env.defs.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert meta["days removed"] == 0
    assert f"signups/{waiting.day}" in meta["days kept"]
    assert f"email-events/{event_day}" in meta["days kept"]
    assert "campaign that is not loaded" in meta["days kept"]
    assert Path(waiting.path).exists()
