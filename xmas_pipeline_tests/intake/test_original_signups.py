"""Every signup shape the original server accepted is accepted, at both signup addresses,
and kept as given from the request to the SQL store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.signup import parse_signup
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import MAX_BODY_BYTES, Settings

PLAIN = "/webhook/christmas-signup"
FLOW_RUN = "/api/deployments/0b6c0f36-5e0b-4d7e-9a57-3f1f1b2c9d41/create_flow_run"
JSON = {"Content-Type": "application/json"}


def make_client(tmp_path: Path) -> TestClient:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"))
    return TestClient(create_app(settings))


def stored(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / "signups").glob("*/*.json"))]


def compact(value: Any) -> bytes:
    """As the website's JavaScript sends it (`JSON.stringify`)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def signup(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "jane@example.com",
        "first_name": "Jane",
        "business_name": "Acme Plumbing",
        "assessment_score": 52,
        "red_systems": 1,
        "orange_systems": 2,
        "yellow_systems": 1,
        "green_systems": 4,
        "gps_score": 40,
        "money_score": 60,
        "weakest_system_1": "Marketing",
        "weakest_system_2": "Sales",
        "revenue_leak_total": 12000,
    }
    return {**body, **overrides}


def wrapped(url: str, body: dict[str, Any]) -> bytes:
    """The request body for `url`: the signup itself, or the Prefect `parameters` envelope."""
    return compact(body) if url == PLAIN else compact({"parameters": body})


def post(client: TestClient, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, content=wrapped(url, body), headers=JSON)


SHAPES: dict[str, dict[str, Any]] = {
    "empty first name": {"first_name": ""},
    "blank first name": {"first_name": "   "},
    "no leak": {"revenue_leak_total": 0},
    "negative leak": {"revenue_leak_total": -4200},
    "lowest leak": {"revenue_leak_total": -1_000_000_000},
    "highest leak": {"revenue_leak_total": 1_000_000_000},
    "long business name": {"business_name": "Acme & Sons Heating, Cooling and Plumbing " * 50},
    "eight of each": {"red_systems": 8, "orange_systems": 8, "yellow_systems": 8},
    "all green": {"red_systems": 0, "orange_systems": 0, "green_systems": 8},
    "lowest scores": {"assessment_score": 0, "gps_score": 0, "money_score": 0},
    "highest scores": {"assessment_score": 100, "gps_score": 100, "money_score": 100},
}


@pytest.mark.parametrize("url", [PLAIN, FLOW_RUN], ids=["plain", "flow-run"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_original_shape_is_accepted_and_stored_as_given(
    tmp_path: Path, url: str, shape: str
) -> None:
    body = signup(**SHAPES[shape])
    response = post(make_client(tmp_path), url, body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    (raw,) = stored(tmp_path)
    assert raw == compact(body)
    # Ingestion reads the file back with every value as posted (names stripped).
    event = parse_signup(raw, received_at=datetime.now(UTC), source="x")
    for field, value in SHAPES[shape].items():
        assert getattr(event.signup, field) == (value.strip() if isinstance(value, str) else value)


@pytest.mark.parametrize("url", [PLAIN, FLOW_RUN], ids=["plain", "flow-run"])
def test_a_business_name_may_fill_the_whole_body(tmp_path: Path, url: str) -> None:
    room = MAX_BODY_BYTES - len(wrapped(url, signup(business_name="")))
    name = ("Acme Bakery " * room)[: room - 1] + "x"
    raw = wrapped(url, signup(business_name=name))
    assert len(raw) == MAX_BODY_BYTES
    client = make_client(tmp_path)
    assert client.post(url, content=raw, headers=JSON).status_code == 202
    (kept,) = stored(tmp_path)
    assert json.loads(kept)["business_name"] == name
    # Only the body limit bounds it.
    too_long = wrapped(url, signup(business_name=name + "x"))
    assert client.post(url, content=too_long, headers=JSON).status_code == 413


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("red_systems", 9),
        ("green_systems", 9),
        ("assessment_score", 101),
        ("money_score", -1),
        ("revenue_leak_total", -1_000_000_001),
        ("first_name", "Jane\r\nBcc: x@evil.example"),
        ("business_name", "Acme " * 1000 + "\x00"),
        ("weakest_system_1", "x" * 101),
    ],
)
@pytest.mark.parametrize("url", [PLAIN, FLOW_RUN], ids=["plain", "flow-run"])
def test_the_original_refusals_are_still_refused(
    tmp_path: Path, url: str, field: str, value: Any
) -> None:
    response = post(make_client(tmp_path), url, signup(**{field: value}))
    assert response.status_code == 422
    assert list(response.json()["errors"]) == [field]
    assert stored(tmp_path) == []


def test_the_sql_store_keeps_these_shapes(sql_store: SqlStore, campaign: Campaign) -> None:
    # On PostgreSQL too: a long business name needs the unbounded column.
    name = "Acme & Sons Heating, Cooling and Plumbing " * 1000
    body = signup(first_name="", business_name=name, revenue_leak_total=-4200, red_systems=8)
    event = parse_signup(compact(body), received_at=datetime.now(UTC), source="x")
    assert sql_store.upsert_signups(campaign, [event]).created == ["jane@example.com"]
    (row,) = sql_store.load_sequences(campaign).to_dict("records")
    assert row["first_name"] == ""
    assert row["business_name"] == name.strip()
    assert row["revenue_leak_total"] == -4200
    assert row["red_systems"] == 8
