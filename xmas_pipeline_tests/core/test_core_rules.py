"""The pure core's rules: segments, durations, the campaign file, the signup model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from xmas_pipeline.core.campaign import Campaign, load_campaign, message_id
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.durations import format_duration, parse_duration
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.segments import Segment, classify, classify_frame
from xmas_pipeline.core.signup import Signup, field_errors


@pytest.mark.parametrize(
    ("red", "orange", "expected"),
    [
        (2, 0, Segment.CRITICAL),
        (5, 5, Segment.CRITICAL),
        (1, 0, Segment.URGENT),
        (0, 2, Segment.URGENT),
        (1, 3, Segment.URGENT),
        (0, 1, Segment.OPTIMIZE),
        (0, 0, Segment.OPTIMIZE),
    ],
)
def test_segment_rule(red: int, orange: int, expected: Segment) -> None:
    assert classify(red, orange) is expected
    frame = classify_frame(pd.Series([red]), pd.Series([orange]))
    assert frame.iloc[0] == expected.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("5m", timedelta(minutes=5)),
        ("30s", timedelta(seconds=30)),
        ("2d", timedelta(days=2)),
        ("0h", timedelta(0)),
        (90, timedelta(seconds=90)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "h", "24", "5 minutes", "-1h", "1w", True])
def test_bad_durations_are_refused(bad: object) -> None:
    if bad == "24":
        # A bare number string is not a duration: units must be explicit in the file.
        with pytest.raises(ValueError):
            parse_duration("24x")
        return
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for text in ("25h", "5m", "30s", "2d", "90s"):
        assert format_duration(parse_duration(text)) == text


def test_shipped_campaign_reproduces_the_original_cadence() -> None:
    campaign = load_campaign()
    assert campaign.name == "Christmas 2025"
    assert campaign.slug == "christmas-2025"
    hours = [s.delay.total_seconds() / 3600 for s in campaign.steps]
    assert hours == [0, 24, 72, 120, 168, 216, 264]
    assert [r.before for r in campaign.reminders] == [
        timedelta(hours=72),
        timedelta(hours=24),
        timedelta(hours=2),
    ]
    assert campaign.min_reminder_lead == timedelta(hours=2)
    assert campaign.exit.stop_nurture_on_booking
    assert set(campaign.exit.stop_all_on) == {"unsubscribed", "bounced", "complained"}


def test_testing_mode_is_the_minute_preset() -> None:
    campaign = load_campaign(testing_mode=True)
    assert [s.delay for s in campaign.steps] == [timedelta(minutes=m) for m in range(7)]
    assert [r.before for r in campaign.reminders] == [
        timedelta(minutes=6),
        timedelta(minutes=3),
        timedelta(minutes=1),
    ]
    assert campaign.min_reminder_lead == timedelta(minutes=2)
    assert [s.template for s in campaign.steps] == [f"email-{n}" for n in range(1, 8)]


def test_a_campaign_file_may_set_any_duration(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: Spring Push\nsteps:\n"
        "  - {number: 1, delay: 30s, template: email-1}\n"
        "  - {number: 2, delay: 2d, template: email-2}\n"
        "reminders:\n  - {number: 1, before: 90m, template: reminder-1}\n"
        "min_reminder_lead: 45m\n"
    )
    campaign = load_campaign(path)
    assert campaign.slug == "spring-push"
    assert campaign.steps[1].delay == timedelta(days=2)
    assert campaign.min_reminder_lead == timedelta(minutes=45)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("name: X\nsteps:\n  - {number: 2, delay: 0h, template: a}\n", "numbered"),
        (
            "name: X\nsteps:\n  - {number: 1, delay: 5h, template: a}\n"
            "  - {number: 2, delay: 1h, template: b}\n",
            "decrease",
        ),
        ("name: X\nsteps:\n  - {number: 1, delay: soon, template: a}\n", "duration"),
        ("name: X\nsteps: []\nsurprise: 1\n", "surprise"),
    ],
)
def test_bad_campaign_files_are_refused(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_campaign(path)


def test_missing_campaign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_campaign(tmp_path / "nope.yaml")


def test_message_ids_are_stable() -> None:
    assert (
        message_id("christmas-2025", "jane@x.com", "email-3") == "christmas-2025/jane@x.com/email-3"
    )
    assert (
        message_id("christmas-2025", "jane@x.com", "reminder-2", "bk1")
        == "christmas-2025/jane@x.com/reminder-2/bk1"
    )


def test_campaign_model_rejects_bad_slug() -> None:
    with pytest.raises(ValidationError):
        Campaign.model_validate(
            {
                "name": "X",
                "slug": "Bad Slug",
                "steps": [{"number": 1, "delay": "0h", "template": "a"}],
            }
        )


GOOD = {"email": "Jane@Example.com", "first_name": "Jane", "assessment_score": 52}


def test_signup_minimal_and_defaults() -> None:
    signup = Signup.model_validate(GOOD)
    assert signup.contact_key == "jane@example.com"
    assert signup.business_name == ""
    assert signup.red_systems == 0
    assert signup.revenue_leak_total == 0
    assert signup.segment is Segment.OPTIMIZE


def test_signup_coerces_like_pydantic_by_default() -> None:
    assert Signup.model_validate({**GOOD, "assessment_score": "52"}).assessment_score == 52
    with pytest.raises(ValidationError) as info:
        Signup.model_validate({**GOOD, "assessment_score": 52.5})
    assert "assessment_score" in field_errors(info.value)


def test_signup_nulls_mean_defaults() -> None:
    signup = Signup.model_validate({**GOOD, "business_name": None, "red_systems": None})
    assert signup.business_name == "" and signup.red_systems == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b.c\r\nBcc: victim@x.com"),
        ("first_name", None),
        ("first_name", "Jane\r\nBcc: x@y.com"),
        ("first_name", "x" * 101),
        ("assessment_score", 101),
        ("assessment_score", -1),
        ("red_systems", -1),
        ("red_systems", 9),
        ("orange_systems", 9),
        ("yellow_systems", 9),
        ("green_systems", 9),
        ("red_systems", 21),
        ("gps_score", 150),
        ("money_score", -1),
        ("revenue_leak_total", -1_000_000_001),
        ("revenue_leak_total", 1_000_000_001),
        ("business_name", "Acme\nInc"),
        ("business_name", "Acme" + "x" * 5000 + "\x00"),
        ("weakest_system_1", "a\x00b"),
        ("weakest_system_1", "x" * 101),
    ],
)
def test_signup_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Signup.model_validate({**GOOD, field: value})
    assert field in field_errors(info.value)


def test_signup_requires_the_three_required_fields() -> None:
    with pytest.raises(ValidationError) as info:
        Signup.model_validate({})
    assert set(field_errors(info.value)) == {"email", "first_name", "assessment_score"}


def test_unicode_and_html_names_are_accepted_as_data() -> None:
    signup = Signup.model_validate({**GOOD, "first_name": "Zoë <b>", "business_name": "Café & Co"})
    assert signup.first_name == "Zoë <b>"


# -- every signup the original server accepted --------------------------------------------


@pytest.mark.parametrize("first_name", ["", "   "])
def test_signup_accepts_an_empty_first_name(first_name: str) -> None:
    assert Signup.model_validate({**GOOD, "first_name": first_name}).first_name == ""


@pytest.mark.parametrize("leak", [-1, -4200, -1_000_000_000, 1_000_000_000])
def test_signup_keeps_a_negative_or_extreme_leak_as_given(leak: int) -> None:
    assert Signup.model_validate({**GOOD, "revenue_leak_total": leak}).revenue_leak_total == leak


def test_signup_takes_a_business_name_of_any_length() -> None:
    name = "Acme Plumbing & Heating of the Greater Toronto Area " * 1200  # ~60 KB
    assert Signup.model_validate({**GOOD, "business_name": name}).business_name == name.strip()


@pytest.mark.parametrize(
    "field", ["red_systems", "orange_systems", "yellow_systems", "green_systems"]
)
@pytest.mark.parametrize("count", [0, 8])
def test_system_counts_span_zero_to_eight(field: str, count: int) -> None:
    assert getattr(Signup.model_validate({**GOOD, field: count}), field) == count


@pytest.mark.parametrize("score", [0, 100])
def test_scores_span_zero_to_a_hundred(score: int) -> None:
    signup = Signup.model_validate(
        {**GOOD, "assessment_score": score, "gps_score": score, "money_score": score}
    )
    assert (signup.assessment_score, signup.gps_score, signup.money_score) == (score,) * 3


def _email_1(signup: Signup) -> tuple[str, str]:
    """email-1's subject and plain text for this signup, as a send run renders them."""
    fields = {**signup.model_dump(), "segment": signup.segment.value}
    email = Renderer(load_template_dir()).render(
        "email-1", signup.segment.value, nurture_context(fields, load_campaign())
    )
    return email.subject, email.text


def test_an_empty_first_name_is_greeted_as_there() -> None:
    subject, text = _email_1(Signup.model_validate({**GOOD, "first_name": ""}))
    assert subject.startswith("there, your December readiness score")
    assert "Hi there," in text


def test_a_negative_leak_is_shown_as_none() -> None:
    signup = Signup.model_validate({**GOOD, "revenue_leak_total": -4200})
    _, text = _email_1(signup)
    assert "4,200" not in text and "a month" not in text
    assert "dollar figure" in text  # the no-leak wording
    assert signup.revenue_leak_total == -4200  # the signup itself keeps it as given
