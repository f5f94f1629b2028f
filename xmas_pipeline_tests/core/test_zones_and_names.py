"""Zones and names from input: a zone is a known IANA name or nothing, never an error;
a name holds no control, line-break or invisible format character, and a rendered
subject never does either, whatever the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from xmas_pipeline.adapters.outbox import build_mime
from xmas_pipeline.adapters.resend_params import local_problem
from xmas_pipeline.core.bookings import clean_name, clean_time_zone
from xmas_pipeline.core.campaign import Campaign, SendWindow, load_campaign
from xmas_pipeline.core.context import meeting_times, nurture_context
from xmas_pipeline.core.due import window_open
from xmas_pipeline.core.ports import OutgoingEmail
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.safe_text import first_unsafe, fold_unsafe
from xmas_pipeline.core.signup import Signup, parse_signup
from xmas_pipeline.core.zones import is_known_zone, known_zone, zone_info

# Values `ZoneInfo` raises on (IsADirectoryError, OSError, ValueError, TypeError...).
NOT_ZONES: list[Any] = [
    "America",  # a folder of the zone database
    "America/",
    "a" * 300,  # "File name too long"
    "../..",
    "../../etc/passwd",
    "/etc/localtime",
    "Europe/Paris\x00",
    "",
    "   ",
    "zone1970.tab",
    "localtime",
    "Mars/Olympus",
    "america/toronto",
    5,
    None,
    ["Europe/Paris"],
    {"zone": "UTC"},
]

# Every kind of character a header must not hold: C0 and C1 controls (U+0085 is NEL),
# line and paragraph separators, bidi marks, embeddings, overrides and isolates, the BOM,
# a soft hyphen, zero-width spaces.
UNSAFE = [
    "\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\x9b",
    "\u2028", "\u2029", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d",
    "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u061c", "\ufeff", "\u00ad",
    "\u200b", "\u2060",
]  # fmt: skip


@pytest.mark.parametrize("value", NOT_ZONES, ids=repr)
def test_anything_but_a_known_zone_is_no_zone_and_never_an_error(value: Any) -> None:
    assert known_zone(value) == "" and not is_known_zone(value)
    assert zone_info(value).key == "UTC"
    assert zone_info(value, "America/Toronto").key == "America/Toronto"
    assert clean_time_zone(value) == "UTC"


@pytest.mark.parametrize("name", ["America/Toronto", "Europe/Paris", "UTC", "Etc/GMT+5"])
def test_known_zones(name: str) -> None:
    assert known_zone(f" {name} ") == name
    assert zone_info(name).key == name


@pytest.mark.parametrize("value", NOT_ZONES, ids=repr)
def test_a_signup_drops_an_unknown_zone(value: Any) -> None:
    base = {"email": "a@example.com", "first_name": "A", "assessment_score": 40}
    assert Signup.model_validate({**base, "timezone": value}).timezone == ""


@pytest.mark.parametrize("value", ["America", "a" * 300, "../..", "Europe/Paris\x00"], ids=repr)
def test_the_campaign_files_default_zone_is_checked_with_a_clear_error(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SendWindow(default_time_zone=value)
    assert "unknown time zone" in str(caught.value)


@pytest.mark.parametrize("value", ["America", "a" * 300, "../..", "\x00"], ids=repr)
def test_meeting_times_and_the_send_window_survive_a_stored_bad_zone(
    campaign: Campaign, value: str
) -> None:
    start = datetime(2025, 12, 10, 15, 0, tzinfo=UTC)
    times = meeting_times(start, value)
    assert times["time_zone"] == "UTC" and times["meeting_time"] == "3:00 PM"
    assert campaign.send_window is not None
    rows = pd.DataFrame({"time_zone": [value, "Europe/London"]})
    at_7_in_toronto = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)  # 12:00 in London
    # A bad stored zone is the campaign's default zone (Toronto: 07:00, closed).
    assert window_open(rows, campaign.send_window, at_7_in_toronto).tolist() == [False, True]
    later = at_7_in_toronto + timedelta(hours=1)
    assert window_open(rows, campaign.send_window, later).tolist() == [True, True]


@pytest.mark.parametrize("char", UNSAFE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "field", ["first_name", "business_name", "weakest_system_1", "weakest_system_2"]
)
def test_a_signup_refuses_unsafe_characters_in_every_name(char: str, field: str) -> None:
    assert first_unsafe(f"Ja{char}ne") == char
    body = {"email": "a@example.com", "first_name": "A", "assessment_score": 40}
    with pytest.raises(ValidationError) as caught:
        Signup.model_validate({**body, field: f"Ja{char}ne"})
    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert f"U+{ord(char):04X}" in error["msg"]


def test_a_lone_surrogate_is_refused_too() -> None:
    body = {"email": "a@example.com", "first_name": "Ja\ud800ne", "assessment_score": 40}
    with pytest.raises(ValidationError):
        Signup.model_validate(body)
    assert fold_unsafe("Ja\ud800ne") == "Ja ne"


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ñúñez-O'Brien",
        "李雷",
        "שרה כהן",  # Hebrew: right to left by itself, no control needed
        "فاطمه",
        "می\u200cخواهم",  # Persian spelling needs the zero-width non-joiner
        "क्\u200dष",  # a Devanagari conjunct with the zero-width joiner
        "👩\u200d💻 Studio",  # an emoji sequence
        "🎄 Noël",
    ],
)
def test_real_names_in_any_script_are_accepted(name: str) -> None:
    assert first_unsafe(name) is None
    body = {"email": "a@example.com", "first_name": name, "assessment_score": 40}
    assert Signup.model_validate({**body, "business_name": name}).first_name == name


def test_a_bad_signup_file_is_rejected_with_its_reason() -> None:
    raw = b'{"email": "a@example.com", "first_name": "Ja\\u0085ne", "assessment_score": 40}'
    with pytest.raises(ValueError) as caught:
        parse_signup(raw, received_at=datetime.now(UTC), source="file.json")
    assert "first_name" in str(caught.value) and "U+0085" in str(caught.value)


def test_folding_keeps_one_line_and_drops_invisible_characters() -> None:
    text = "A" + "".join(UNSAFE) + "B\u200dC"
    folded = fold_unsafe(text)
    assert first_unsafe(folded) is None
    assert len(folded.splitlines()) == 1
    assert folded == "A B\u200dC"
    assert clean_name("  Jane\x85\u202eDoe\u2028Smith ") == "Jane Doe Smith"


def _outgoing(subject: str) -> OutgoingEmail:
    return OutgoingEmail(
        message_id="m",
        idempotency_key="m",
        to="jane@example.com",
        from_email="BusOS <hello@example.com>",
        subject=subject,
        html="<p>x</p>",
        text="x",
    )


@pytest.mark.parametrize("char", UNSAFE, ids=lambda c: f"U+{ord(c):04X}")
def test_a_rendered_subject_can_always_be_sent(char: str) -> None:
    """Defence in depth: a row an older release stored, unchecked, still renders a subject
    the outbox's MIME writer and the Resend sender take."""
    campaign = load_campaign()
    fields = {
        "email": "jane@example.com",
        "first_name": f"Ja{char}ne{char}",
        "business_name": f"Acme{char}Ltd",
        "weakest_system_1": f"Sales{char}",
        "assessment_score": 40,
    }
    renderer = Renderer(load_template_dir())
    for base, segment in (("email-1", "URGENT"), ("email-2", "CRITICAL"), ("email-7", "URGENT")):
        rendered = renderer.render(base, segment, nurture_context(fields, campaign))
        assert first_unsafe(rendered.subject) is None and first_unsafe(rendered.preheader) is None
        assert "Ja" in rendered.subject
        email = _outgoing(rendered.subject)
        assert local_problem(email) == ""
        mime = build_mime(email)
        assert isinstance(mime, EmailMessage)
        assert mime.as_bytes()
