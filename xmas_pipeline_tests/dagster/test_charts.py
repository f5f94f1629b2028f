"""Pictures and forecasts in the UI: the funnel's charts (PNG images in Markdown metadata)
and `due_emails`' table of the next 7 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from xmas_pipeline.core.bookings import parse_webhook
from xmas_pipeline.core.funnel import compute_funnel
from xmas_pipeline.dagster_defs.charts import (
    campaign_sends_chart,
    funnel_chart,
    png_markdown,
    sends_per_day_chart,
)
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)
from xmas_pipeline_tests.support.png import decode_png

CHARTS = ("funnel chart", "sends per day chart")
PEOPLE = [
    signup("c1@x.com", red=2),
    signup("c2@x.com", red=3),
    signup("u1@x.com", red=1),
    signup("o1@x.com"),
]


def funnel_images(env: PipelineEnv, instance: dg.DagsterInstance) -> dict[str, bytes]:
    result = env.defs.resolve_job_def(env.name("refresh_funnel")).execute_in_process(
        instance=instance
    )
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == env.key("funnel")
    ]
    metadata = event.materialization.metadata
    for name in CHARTS:
        assert isinstance(metadata[name], dg.MarkdownMetadataValue), name
    return {name: decode_png(str(metadata[name].value)) for name in CHARTS}


def test_the_funnel_shows_its_charts_empty_and_with_data(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home", XMAS_TESTING_MODE="true")
    for person in PEOPLE:
        env.drop_signup(person, age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        empty = funnel_images(env, instance)  # nothing sent: still images, saying so
        env.ingest(today(), instance)
        for _ in range(2):
            assert env.send(today(), instance, catch_up=True).success
        full = funnel_images(env, instance)
        again = funnel_images(env, instance)
    for name in CHARTS:
        assert full[name] != empty[name]
        assert again[name] == full[name]  # the same data draws the same bytes


def test_charts_are_deterministic_and_draw_any_data() -> None:
    sequences = pd.DataFrame(
        {
            "contact_key": ["a@x.com", "b@x.com"],
            "segment": ["CRITICAL", "OPTIMIZE"],
            "booked": [True, False],
            "unsubscribed": [False, False],
        }
    )
    start = datetime(2025, 12, 1, 9, tzinfo=UTC)
    log = pd.DataFrame(
        [
            {
                "message_id": f"c/{key}/{step}",
                "contact_key": key,
                "kind": kind,
                "step_id": step,
                "step_number": number,
                "segment": segment,
                "sent_at": start + timedelta(days=day),
                "provider_id": f"p-{key}-{step}",
            }
            for key, segment in (("a@x.com", "CRITICAL"), ("b@x.com", "OPTIMIZE"))
            for kind, step, number, day in (
                ("nurture", "email-1", 1, 0),
                ("nurture", "email-2", 2, 1),
                ("reminder", "reminder-1", 1, 5),  # a day-long gap before it
            )
        ]
    )
    funnel = compute_funnel(log, None, sequences)
    for draw in (lambda: funnel_chart(funnel), lambda: sends_per_day_chart(log)):
        png = draw()
        assert png == draw()
        decode_png(png_markdown(png, "a chart").value)
    # Text after the image is a caption; brackets in the alt text cannot break the link.
    text = png_markdown(b"\x89PNG", "a [b]", "note").value
    assert text.startswith("![a (b)](data:image/png;base64,") and text.endswith("\n\n_note_")


def test_the_campaigns_chart_draws_one_line_per_campaign() -> None:
    per_day = pd.DataFrame(
        {
            "day": [f"2026-12-{d:02d}" for d in range(1, 15)],
            "christmas-2025": [3, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4],
            "christmas-2026": [0, 5, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 1],
        }
    )
    both = campaign_sends_chart(per_day, ["christmas-2025", "christmas-2026"])
    assert both == campaign_sends_chart(per_day, ["christmas-2025", "christmas-2026"])
    one = campaign_sends_chart(per_day, ["christmas-2025"])
    quiet = campaign_sends_chart(per_day.assign(**{"christmas-2025": 0}), ["christmas-2025"])
    # Each is an image of its own: another campaign's line, or none at all ("nothing sent").
    assert len({both, one, quiet}) == 3
    for png in (both, one, quiet):
        decode_png(png_markdown(png, "a chart").value)


def md_rows(markdown: str) -> list[dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def label(moment: datetime) -> str:
    """A table's day: the UTC date and its English weekday."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d} {('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[utc.weekday()]}"


def test_due_emails_lists_the_next_seven_days(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home")  # the real cadence: emails over 11 days
    now = datetime.now(UTC)
    for email in ("a@x.com", "b@x.com", "gone@x.com"):
        env.drop_signup(signup(email, red=2), age=timedelta(minutes=10))
    start = now + timedelta(days=4)
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        store = env.store()
        store.set_flags(env.campaign, "gone@x.com", unsubscribed=True)
        # b books a call: no more nurture for b, three reminders before the call.
        body = webhook_created("bk-1", start, at=now - timedelta(minutes=1), email="b@x.com")
        event = parse_webhook(body, received_at=now)
        assert event is not None
        store.upsert_booking_events(env.campaign, [event])
        signed_up = store.load_sequences(env.campaign).set_index("contact_key")["signup_at"]
        result = env.send(today(), instance, catch_up=True)
    [meta] = materializations(result, "due_emails")
    rows = {row["day"]: row for row in md_rows(meta["next 7 days"])}

    # a: the welcome is due now (counted as `due`); emails 2-5 fall within the week.
    expected: dict[tuple[str, str], int] = {}
    for number, hours in ((2, 24), (3, 72), (4, 120), (5, 168)):
        expected[label(signed_up["a@x.com"] + timedelta(hours=hours)), f"email-{number}"] = 1
    for number, hours in ((1, 72), (2, 24), (3, 2)):
        expected[label(start - timedelta(hours=hours)), f"reminder-{number}"] = 1
    steps = [f"email-{n}" for n in range(1, 8)] + [f"reminder-{n}" for n in range(1, 4)]
    days = [day for day in rows if day != "total"]
    evaluated = datetime.fromisoformat(meta["evaluated at"])
    assert days[0] == label(evaluated) and len(days) in (7, 8)
    for day in days:
        for step in steps:
            assert int(rows[day][step]) == expected.get((day, step), 0), (day, step)
        assert int(rows[day]["total"]) == sum(expected.get((day, s), 0) for s in steps)
    assert int(rows["total"]["total"]) == 7
    assert int(rows["total"]["email-1"]) == 0 and int(rows["total"]["reminder-3"]) == 1
