"""What a marketer reads in the UI: the materialization metadata of each asset.

Counts must be plain ints/floats (the UI plots those across materializations); tables are
markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.dagster_defs.metadata import reasons_table
from xmas_pipeline.services.sending import DeliveryReport
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)

PLOTTED = (dg.IntMetadataValue, dg.FloatMetadataValue)


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def raw_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dg.MetadataValue]:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset
    ]
    return dict(event.materialization.metadata)


def assert_plotted(metadata: dict[str, dg.MetadataValue], names: list[str]) -> None:
    for name in names:
        assert isinstance(metadata[name], PLOTTED), (name, metadata[name])


def refresh_funnel(env: PipelineEnv, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = env.defs.resolve_job_def(env.name("refresh_funnel"))
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    return result


PEOPLE = [
    signup("c1@x.com", red=2),
    signup("c2@x.com", red=3),
    signup("u1@x.com", red=1),
    signup("o1@x.com"),
]


def test_signups_and_sequences_by_segment_and_step_reached(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person, age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        first = env.ingest(today(), instance)
        signups = materializations(first, "signups")[0]
        assert signups["day"] == today()
        assert (signups["accepted"], signups["rejected"]) == (4, 0)
        assert signups["segment CRITICAL"] == 2
        assert signups["segment URGENT"] == 1 and signups["segment OPTIMIZE"] == 1
        assert_plotted(raw_metadata(first, "signups"), ["accepted", "segment CRITICAL"])

        sequences = materializations(first, "email_sequences")[0]
        assert sequences["signups CRITICAL"] == 2 and sequences["new sequences"] == 4
        assert sequences["sequences"] == 4
        assert sequences["reached not emailed"] == 4
        assert sequences["reached email-1"] == 0

        # Two send runs: everyone has had email 1, then email 2.
        for _ in range(2):
            assert env.send(today(), instance, catch_up=True).success
        env.store().set_flags(env.campaign, "o1@x.com", booked=True)
        reingest = env.ingest(today(), instance)
        again = materializations(reingest, "email_sequences")[0]
        raw = raw_metadata(reingest, "email_sequences")
    assert again["reached not emailed"] == 0
    assert again["reached email-2"] == 4
    assert [again[f"reached email-{n}"] for n in range(3, 8)] == [0] * 5
    assert again["unchanged"] == 4
    table = again["by step reached"]
    assert "| segment | not emailed | email-1 | email-2 | email-3 |" in table
    assert "| CRITICAL | 0 | 0 | 2 | 0 | 0 | 0 | 0 | 0 | 0 | 2 |" in table
    assert "| OPTIMIZE | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 1 |" in table
    assert_plotted(raw, ["sequences", "reached not emailed", "reached email-2"])
    assert isinstance(raw["by step reached"], dg.MarkdownMetadataValue)


def test_deliveries_count_due_sent_skipped_failed_with_reasons(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person)
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        store = env.store()
        store.set_flags(env.campaign, "c2@x.com", paused=True)
        store.set_flags(env.campaign, "u1@x.com", unsubscribed=True)
        result = env.send(today(), instance, catch_up=True)
        meta = materializations(result, "deliveries")[0]
        raw = raw_metadata(result, "deliveries")
        due = materializations(result, "due_emails")[0]
    assert due["due"] == 2 and due["skipped or exiting"] == 2
    assert meta["due"] == 4
    assert (meta["sent"], meta["skipped"], meta["failed"], meta["retry next run"]) == (2, 2, 0, 0)
    assert (meta["sent CRITICAL"], meta["sent URGENT"], meta["sent OPTIMIZE"]) == (1, 0, 1)
    assert meta["sent by step"] == {"email-1": 2}
    assert meta["forced"] is False
    assert "| outcome | reason | messages |" in meta["reasons"]
    assert "| skipped | paused | 1 |" in meta["reasons"]
    assert "| skipped | unsubscribed | 1 |" in meta["reasons"]
    problems = meta["problems"]
    assert "| outcome | message_id | step_id | segment | reason |" in problems
    assert "| skipped | christmas-2025/c2@x.com/email-1 | email-1 | CRITICAL | paused |" in problems
    assert_plotted(raw, ["due", "sent", "failed", "skipped", "retry next run", "sent CRITICAL"])


def test_reasons_table_counts_each_reason_most_frequent_first() -> None:
    report = DeliveryReport(due=4)
    for key in ("a", "b"):
        report.failed.append(
            {"message_id": key, "step_id": "email-1", "segment": "URGENT", "reason": "bad address"}
        )
    report.retry.append(
        {"message_id": "c", "step_id": "email-1", "segment": "URGENT", "reason": "timeout"}
    )
    table = reasons_table(report.problems()).value
    assert table.index("| failed | bad address | 2 |") < table.index("| retry | timeout | 1 |")
    assert reasons_table(DeliveryReport().problems()).value == "_none_"


def test_funnel_asset_counts_and_converts(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person, age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        empty = materializations(refresh_funnel(env, instance), "funnel")[0]
        assert empty["sent"] == 0 and empty["booking conversion"] == 0.0

        env.ingest(today(), instance)
        for _ in range(2):
            env.send(today(), instance, catch_up=True)
        env.store().set_flags(env.campaign, "c1@x.com", booked=True)
        result = refresh_funnel(env, instance)
    meta: dict[str, Any] = materializations(result, "funnel")[0]
    assert meta["sent"] == 8 and meta["booked"] == 1
    assert meta["booking conversion"] == 0.25
    assert meta["conversion CRITICAL"] == 0.5 and meta["conversion URGENT"] == 0.0
    table = meta["funnel by segment and step"]
    assert "| segment | step | sent | delivered | opened | clicked | bounced |" in table
    assert "| CRITICAL | email-2 | 2 | 0 | 0 | 0 | 0 | 0 | 0 | 1 |" in table
    assert "| CRITICAL | 2 | 2 | 1 | 50.0% |" in meta["booking conversion by segment"]
    raw = raw_metadata(result, "funnel")
    assert_plotted(raw, ["sent", "opened", "booked", "open rate", "booking conversion"])
    assert isinstance(raw["booking conversion"], dg.FloatMetadataValue)


def test_funnel_follows_deliveries_and_has_its_schedule(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(env.key("funnel")).parent_keys}
    assert env.key("deliveries").to_user_string() in parents
    spec = next(s for s in env.defs.resolve_all_asset_specs() if s.key == env.key("funnel"))
    assert spec.group_name == "christmas_2025" and "pandas" in spec.kinds
    schedule = env.defs.resolve_schedule_def(env.name("funnel_schedule"))
    assert schedule.job_name == env.name("refresh_funnel")


def test_templates_show_each_template_rendered_for_each_segment(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        result = env.send(today(), instance, catch_up=True)  # no contacts: only the review
    meta = materializations(result, "templates")[0]
    raw = raw_metadata(result, "templates")
    bases = [s.template for s in env.campaign.steps] + [r.template for r in env.campaign.reminders]
    for base in bases:
        for segment in ("CRITICAL", "URGENT", "OPTIMIZE"):
            preview = meta[f"{base} {segment}"]
            assert isinstance(raw[f"{base} {segment}"], dg.MarkdownMetadataValue)
            assert preview.startswith("**Subject: ") and "{{" not in preview
            assert "Jamie" in preview  # the sample contact's name, rendered in
    # Each segment reads its own variant of email 2.
    assert "_template `email-2.critical`_" in meta["email-2 CRITICAL"]
    assert "_template `email-2.optimize`_" in meta["email-2 OPTIMIZE"]
    assert meta["templates"] == 17  # 16 nurture and reminder files, and `confirm`


def test_a_preview_shows_template_text_literally() -> None:
    from xmas_pipeline.dagster_defs.metadata import email_preview

    text = (
        "Hi *Jamie*,\n\n1. Map [what](x) happens\nline two\n\n# not a heading\n- not a list\n\n"
        "Book (https://cal.com/busos/a_call) today"
    )
    preview = email_preview("Save $4,200 <now>", "email-9", text).value
    assert preview.startswith("**Subject: Save $4,200 \\<now\\>**")
    assert "Hi \\*Jamie\\*," in preview
    assert "1\\. Map \\[what\\](x) happens  \nline two" in preview
    assert "\\# not a heading  \n\\- not a list" in preview
    # Links are left whole, so the UI links them.
    assert "Book (https://cal.com/busos/a_call) today" in preview


def resend_webhook(kind: str, provider_id: str, to: str) -> dict[str, Any]:
    """A Resend webhook body as the intake stores it in inbox/email-events/<day>/."""
    return {
        "type": f"email.{kind}",
        "created_at": datetime.now(UTC).isoformat(),
        "data": {"email_id": provider_id, "to": [to], "subject": "Hi", "tags": {}},
    }


def test_funnel_counts_resend_events_and_unsubscribes(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person, age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        for _ in range(2):
            env.send(today(), instance, catch_up=True)
        log = env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")
        ids = {(r.contact_key, r.step_id): r.provider_id for r in log.itertuples()}
        webhooks = [
            *(
                resend_webhook(k, ids["c1@x.com", "email-1"], "c1@x.com")
                for k in ("delivered", "opened", "clicked")
            ),
            resend_webhook("delivered", ids["c2@x.com", "email-1"], "c2@x.com"),
            resend_webhook("opened", ids["c2@x.com", "email-2"], "c2@x.com"),
            resend_webhook("bounced", ids["u1@x.com", "email-2"], "u1@x.com"),
            {
                "type": "contact.unsubscribed",
                "created_at": datetime.now(UTC).isoformat(),
                "data": {"email": "o1@x.com", "source": "one-click"},
            },
        ]
        for body in webhooks:
            env.inbox.write_json("email-events", body)
        job = env.defs.resolve_job_def("ingest_email_events")
        assert job.execute_in_process(partition_key=today(), instance=instance).success
        result = refresh_funnel(env, instance)
    meta = materializations(result, "funnel")[0]
    assert meta["delivery events"] == "from Resend webhooks"
    assert (meta["sent"], meta["delivered"], meta["opened"], meta["clicked"]) == (8, 3, 2, 1)
    assert (meta["bounced"], meta["unsubscribed"]) == (1, 1)
    assert meta["open rate"] == 0.25
    table = meta["funnel by segment and step"]
    assert "| CRITICAL | email-1 | 2 | 2 | 1 | 1 | 0 | 0 | 0 | 0 |" in table
    assert "| CRITICAL | email-2 | 2 | 1 | 1 | 0 | 0 | 0 | 0 | 0 |" in table
    assert "| URGENT | email-2 | 1 | 0 | 0 | 0 | 1 | 0 | 0 | 0 |" in table
    assert "| OPTIMIZE | email-2 | 1 | 0 | 0 | 0 | 0 | 0 | 1 | 0 |" in table
