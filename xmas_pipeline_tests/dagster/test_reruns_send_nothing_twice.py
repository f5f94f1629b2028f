"""Re-running sends nothing twice: a forced or one-off send's key is derived from what a
person asked for (the backfill, the launch), not from the attempt, so re-executing a
failed run sends only what the first attempt did not.

A re-execution is a new run carrying Dagster's `dagster/root_run_id` and
`dagster/parent_run_id` tags, as the UI's "Re-execute" gives it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)


def reexecution(first: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {"dagster/root_run_id": first.run_id, "dagster/parent_run_id": first.run_id}


def resend_env(tmp_path: Path, base_url: str) -> PipelineEnv:
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        RESEND_API_KEY=DEFAULT_API_KEY,
        RESEND_API_URL=base_url,
        XMAS_POSTAL_ADDRESS="BusOS Ltd, 1 King St W, Toronto ON",
        XMAS_PUBLIC_URL="https://campaign.example.com",
    )


def test_a_reexecuted_forced_backfill_sends_only_what_the_first_attempt_did_not(
    tmp_path: Path,
) -> None:
    people = [f"p{n:03}@x.com" for n in range(101)]  # two batches: 100, then 1
    # Enough quota for the welcomes and 100 forced re-sends: the 101st is refused.
    with running_fake(rate_limit=None, daily_quota=201) as resend:
        env = resend_env(tmp_path, resend.base_url)
        job = env.defs.resolve_job_def(env.name("send_due_emails"))
        config = {"ops": {env.name("deliveries"): {"config": {"force": True}}}}
        with in_memory_instance() as instance:
            age = timedelta(seconds=30)
            # The forced backfill re-sends the day the welcomes fell due: the signups' day
            # (yesterday in the first 30 seconds after midnight).
            signup_day = (datetime.now(UTC) - age).strftime("%Y-%m-%d")
            for person in people:
                env.drop_signup(signup(person), age=age)
            assert env.ingest(today(), instance).success
            assert env.send(today(), instance, catch_up=True).success
            assert len(resend.accepted) == 101

            first = job.execute_in_process(
                partition_key=signup_day,
                instance=instance,
                run_config=config,
                tags={"dagster/backfill": "bf-1"},
                raise_on_error=False,
            )
            assert not first.success  # the quota stopped it after the first batch
            assert len(resend.accepted) == 201

            resend.reset_quota()
            again = job.execute_in_process(
                partition_key=signup_day,
                instance=instance,
                run_config=config,
                tags=reexecution(first),
                raise_on_error=False,
            )
            assert again.success
            assert materializations(again, "deliveries")[0]["sent"] == 1
    # Every welcome went twice (once, then once forced), never three times.
    assert sorted(set(resend.deliveries().values())) == [2]
    sent = env.store().sent_log(env.campaign, "2000-01-01", "2999-12-31")
    keys = set(sent.loc[sent["forced"], "idempotency_key"].str.split("/resend-").str[1])
    assert keys == {"backfill-bf-1"}


def test_a_reexecuted_resend_contact_sends_only_what_the_first_attempt_did_not(
    tmp_path: Path,
) -> None:
    env = make_env(tmp_path / "home", XMAS_TESTING_MODE="true")
    job = env.defs.resolve_job_def(env.name("resend_contact"))
    config = {
        "ops": {
            env.name("resend_to_contact"): {
                "config": {"email": "jane@x.com", "steps": ["email-1", "email-2"]}
            }
        }
    }
    with in_memory_instance() as instance:
        env.drop_signup(signup("jane@x.com"), age=timedelta(minutes=5))
        assert env.ingest(today(), instance).success
        # The store refuses to record email-2 (the database failing under the run): the
        # first attempt hands both emails over, records email-1, and fails.
        engine = sa.create_engine(env.settings.database_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_email_2 BEFORE INSERT ON messages "
                    "WHEN NEW.step_id = 'email-2' BEGIN SELECT RAISE(ABORT, 'disk I/O'); END"
                )
            )
        first = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
        assert not first.success
        assert len(env.outbox_files()) == 2
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_email_2"))
        engine.dispose()

        again = job.execute_in_process(
            instance=instance, run_config=config, tags=reexecution(first), raise_on_error=False
        )
        assert again.success
    # The re-execution used the same keys: no third or fourth email in the outbox.
    assert len(env.outbox_files()) == 2
    sent = env.store().sent_log(env.campaign, "2000-01-01", "2999-12-31")
    forced = sent[sent["forced"]]
    assert sorted(forced["step_id"]) == ["email-1", "email-2"]
    assert set(forced["idempotency_key"].str.split("/resend-").str[1]) == {first.run_id}
