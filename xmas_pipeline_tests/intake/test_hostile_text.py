"""Zones and names the intake is sent, over its ASGI app: a zone that is no IANA zone is
dropped (signups) or taken as UTC (bookings), never a 500; a name with a control, line
break or invisible format character is a 422 naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.core.bookings import parse_booking_file
from xmas_pipeline.core.signup import parse_signup
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.support.calcom_payloads import webhook_created

SIGNUP = "/webhook/christmas-signup"
FLOW_RUN = "/api/deployments/0b6c0f36/create_flow_run"
CALCOM = "/webhook/calcom-booking"
JSON = {"Content-Type": "application/json"}

BAD_ZONES: list[Any] = [
    "America",
    "Europe",
    "a" * 300,
    "../..",
    "../../../etc/passwd",
    "Europe/Paris\u0000",
    "America/",
    "",
    7,
    None,
    ["UTC"],
]
# U+0085 (NEL) and U+2028 break a header line; the others are invisible bidi or format
# characters that make a subject read other than it is.
BAD_CHARS = ["\x85", "\u2028", "\u2029", "\u200e", "\u202e", "\u2066", "\ufeff", "\x0b"]


def make_client(tmp_path: Path) -> TestClient:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"))
    # An uncaught error is answered 500, as the real server would, not raised in the test.
    return TestClient(
        create_app(settings), raise_server_exceptions=False, client=("127.0.0.1", 50000)
    )


def stored(tmp_path: Path, kind: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / kind).glob("*/*.json"))]


def signup(**overrides: Any) -> dict[str, Any]:
    return {"email": "jane@example.com", "first_name": "Jane", "assessment_score": 52, **overrides}


def post(client: TestClient, path: str, body: Any) -> Any:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return client.post(path, content=raw, headers=JSON)


@pytest.mark.parametrize("zone", BAD_ZONES, ids=repr)
@pytest.mark.parametrize("path", [SIGNUP, FLOW_RUN])
def test_a_signups_bad_zone_is_dropped_never_a_500(tmp_path: Path, path: str, zone: Any) -> None:
    body = signup(timezone=zone)
    response = post(make_client(tmp_path), path, {"parameters": body} if path == FLOW_RUN else body)
    assert response.status_code == 202, response.text
    [raw] = stored(tmp_path, "signups")
    event = parse_signup(raw, received_at=datetime.now(UTC), source="x")
    assert event.signup.timezone == ""  # the campaign's default zone applies


def test_a_signups_known_zone_is_kept(tmp_path: Path) -> None:
    response = post(make_client(tmp_path), SIGNUP, signup(timezone="Europe/Paris"))
    assert response.status_code == 202
    [raw] = stored(tmp_path, "signups")
    assert parse_signup(raw, received_at=datetime.now(UTC), source="x").signup.timezone == (
        "Europe/Paris"
    )


@pytest.mark.parametrize("char", BAD_CHARS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "field", ["first_name", "business_name", "weakest_system_1", "weakest_system_2"]
)
@pytest.mark.parametrize("path", [SIGNUP, FLOW_RUN])
def test_a_name_with_a_line_or_format_character_is_422_naming_the_field(
    tmp_path: Path, path: str, field: str, char: str
) -> None:
    body = signup(**{field: f"Ja{char}ne"})
    response = post(make_client(tmp_path), path, {"parameters": body} if path == FLOW_RUN else body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert f"U+{ord(char):04X}" in errors[field]
    assert stored(tmp_path, "signups") == []


def test_names_in_scripts_that_need_joiners_are_accepted(tmp_path: Path) -> None:
    body = signup(first_name="می\u200cخواهم", business_name="👩\u200d💻 Studio")
    assert post(make_client(tmp_path), SIGNUP, body).status_code == 202


@pytest.mark.parametrize("zone", BAD_ZONES, ids=repr)
def test_a_bookings_bad_zone_is_stored_and_read_as_utc(tmp_path: Path, zone: Any) -> None:
    start = datetime(2025, 12, 10, 15, 0, tzinfo=UTC)
    body = webhook_created("bkZone1", start, at=datetime(2025, 12, 1, tzinfo=UTC))
    body["payload"]["attendees"][0]["timeZone"] = zone
    body["payload"]["organizer"]["timeZone"] = zone
    response = post(make_client(tmp_path), CALCOM, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    [raw] = stored(tmp_path, "bookings")
    event = parse_booking_file(raw, received_at=datetime.now(UTC), ref="x")
    assert event is not None and event.time_zone == "UTC"


@pytest.mark.parametrize("char", BAD_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_bookings_attendee_name_is_cleaned_at_ingestion(tmp_path: Path, char: str) -> None:
    """Cal.com's booking is real: it is kept, and the name is cleaned when it is read."""
    start = datetime(2025, 12, 10, 15, 0, tzinfo=UTC)
    body = webhook_created("bkName1", start, at=datetime(2025, 12, 1, tzinfo=UTC))
    body["payload"]["attendees"][0]["name"] = f"Ja{char}ne{char} Doe"
    assert post(make_client(tmp_path), CALCOM, body).status_code == 200
    [raw] = stored(tmp_path, "bookings")
    event = parse_booking_file(raw, received_at=datetime.now(UTC), ref="x")
    assert event is not None
    assert event.name in ("Ja ne Doe", "Jane Doe")
    assert event.first_name in ("Ja", "Jane")
