"""POST /api/deployments/<id>/create_flow_run: the original tool's Prefect endpoint, which the
live website posts to. Same checks and answers as POST /webhook/christmas-signup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.core.signup import parse_signup
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings

PLAIN = "/webhook/christmas-signup"
DEPLOYMENT = "0b6c0f36-5e0b-4d7e-9a57-3f1f1b2c9d41"
URL = f"/api/deployments/{DEPLOYMENT}/create_flow_run"
TOKEN = "flow-run-signup-token"
JSON = {"Content-Type": "application/json"}


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"), **overrides)
    return TestClient(create_app(settings))


def stored(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / "signups").glob("*/*.json"))]


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def signup(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "Zoë.Ñúñez@example.com",
        "first_name": "Zoë",
        "business_name": "Café «Noël» 🎄",
        "assessment_score": 37,
        "red_systems": 2,
        "orange_systems": 1,
        "revenue_leak_total": 8300,
        "weakest_system_1": "Lead Capture",
        "utm_source": "newsletter",  # unknown keys are kept in the file, ignored by the model
    }
    return {**body, **overrides}


def flow_run(parameters: Any, **extra: Any) -> bytes:
    return compact({"parameters": parameters, **extra})


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


# -- accepted -------------------------------------------------------------------------------


def test_the_file_is_byte_identical_to_a_plain_compact_signup(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    plain = client.post(PLAIN, content=compact(signup()), headers=JSON)
    # Spaces, key order and Prefect's other keys in the envelope do not reach the file.
    envelope = (
        b'{ "name": "christmas-signup", "parameters" :\n  '
        + json.dumps(signup(), indent=2, ensure_ascii=True).encode()
        + b', "tags": ["website"] }'
    )
    prefect = client.post(URL, content=envelope, headers=JSON)
    assert plain.status_code == prefect.status_code == 202
    first, second = stored(tmp_path)
    assert first == second == compact(signup())
    # The same answer, apart from the file each names.
    assert {**plain.json(), "event_id": ""} == {**prefect.json(), "event_id": ""}
    assert prefect.json() == {
        "status": "accepted",
        "email": "Zoë.Ñúñez@example.com",
        "campaign": "Christmas 2025",
        "segment": "CRITICAL",
        "event_id": prefect.json()["event_id"],
    }
    names = {p.name for p in (tmp_path / "inbox" / "signups").glob("*/*.json")}
    assert names == {f"{plain.json()['event_id']}.json", f"{prefect.json()['event_id']}.json"}


def test_the_pipeline_reads_the_file_as_the_signup(client: TestClient, tmp_path: Path) -> None:
    assert client.post(URL, content=flow_run(signup())).status_code == 202
    (raw,) = stored(tmp_path)
    event = parse_signup(raw, received_at=datetime.now(UTC), source="x")
    assert event.signup.business_name == "Café «Noël» 🎄"
    assert event.contact_key == "zoë.ñúñez@example.com"


@pytest.mark.parametrize(
    "deployment",
    [
        DEPLOYMENT,
        DEPLOYMENT.upper(),
        "610fa438-3eda-41d6-8f14-864655ee96c7",
        "3fa85f6457174562b3fc2c963f66afa6",
    ],
)
def test_any_deployment_id(client: TestClient, tmp_path: Path, deployment: str) -> None:
    url = f"/api/deployments/{deployment}/create_flow_run"
    assert client.post(url, content=flow_run(signup()), headers=JSON).status_code == 202
    assert len(stored(tmp_path)) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/api/deployments//create_flow_run",
        f"/api/deployments/{DEPLOYMENT}/extra/create_flow_run",
        f"/api/deployments/{DEPLOYMENT}/create_flow_runs",
        f"/api/deployments/{DEPLOYMENT}",
    ],
)
def test_other_paths_are_404(client: TestClient, tmp_path: Path, path: str) -> None:
    assert client.post(path, content=flow_run(signup()), headers=JSON).status_code == 404
    assert stored(tmp_path) == []


def test_wrong_method(client: TestClient) -> None:
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=utf-8"])
def test_lenient_content_types(
    client: TestClient, tmp_path: Path, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert client.post(URL, content=flow_run(signup()), headers=headers).status_code == 202


# -- refused, as the plain endpoint refuses -------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        signup(email="not-an-email"),
        signup(first_name="Jane\r\nBcc: x@evil.example"),
        signup(red_systems=9, assessment_score=101),
        signup(revenue_leak_total=-(10**9) - 1),
        signup(business_name={"n": 1}),
    ],
)
def test_field_errors_are_the_plain_endpoints(
    client: TestClient, tmp_path: Path, parameters: dict[str, Any]
) -> None:
    prefect = client.post(URL, content=flow_run(parameters), headers=JSON)
    plain = client.post(PLAIN, content=compact(parameters), headers=JSON)
    assert prefect.status_code == plain.status_code == 422
    assert prefect.json() == plain.json()
    assert prefect.json()["status"] == "rejected" and prefect.json()["errors"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    "body",
    [
        signup(),  # the signup without its envelope
        {"parameters": None},
        {"parameters": [signup()]},
        {"parameters": json.dumps(signup())},
        {"Parameters": signup()},
    ],
)
def test_a_body_without_a_parameters_object(
    client: TestClient, tmp_path: Path, body: dict[str, Any]
) -> None:
    response = client.post(URL, content=compact(body), headers=JSON)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert list(errors) == ["parameters"] and "object" in errors["parameters"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("body", [[signup()], "x", 52, None])
def test_json_that_is_not_an_object(client: TestClient, tmp_path: Path, body: Any) -> None:
    response = client.post(URL, content=compact(body), headers=JSON)
    assert response.status_code == 422
    assert response.json()["errors"] == {"body": "must be a JSON object"}


def test_text_that_is_not_unicode_is_refused(client: TestClient, tmp_path: Path) -> None:
    # Valid JSON, but "\ud800" alone cannot be written as UTF-8.
    raw = b'{"parameters": {"email": "a@b.co", "first_name": "\\ud800", "assessment_score": 1}}'
    response = client.post(URL, content=raw, headers=JSON)
    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["parameters"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("raw", [b"", b"{bad", b'{"parameters": NaN}', b"\xff\xfe"])
def test_bodies_that_are_not_json(client: TestClient, tmp_path: Path, raw: bytes) -> None:
    response = client.post(URL, content=raw, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"status": "rejected", "reason": "body is not valid JSON"}


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/xml"])
def test_non_json_content_types(client: TestClient, tmp_path: Path, content_type: str) -> None:
    response = client.post(URL, content=flow_run(signup()), headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert stored(tmp_path) == []


def test_64_kib_limit(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    base = len(flow_run(signup(), padding=""))
    exact = flow_run(signup(), padding="x" * (64 * 1024 - base))
    assert len(exact) == 64 * 1024
    assert client.post(URL, content=exact, headers=JSON).status_code == 202
    over = flow_run(signup(), padding="x" * (64 * 1024 - base + 1))
    response = client.post(URL, content=over, headers=JSON)
    assert response.status_code == 413
    assert len(stored(tmp_path)) == 1


# -- the bearer token -----------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong", TOKEN, f"Basic {TOKEN}"])
def test_missing_or_wrong_token(tmp_path: Path, header: str | None) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    headers = {**JSON, **({"Authorization": header} if header is not None else {})}
    response = client.post(URL, content=flow_run(signup()), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored(tmp_path) == []


def test_right_token(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    headers = {**JSON, "Authorization": f"Bearer {TOKEN}"}
    assert client.post(URL, content=flow_run(signup()), headers=headers).status_code == 202


def test_auth_is_checked_before_the_body(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_token=TOKEN)
    assert client.post(URL, content=b"x" * 100_000).status_code == 401


# -- browsers -------------------------------------------------------------------------------


def test_cors(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_allowed_origins="https://busos.example")
    preflight = client.options(
        URL,
        headers={
            "Origin": "https://busos.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://busos.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    for body in (flow_run(signup()), flow_run({}), b"{bad"):
        response = client.post(
            URL, content=body, headers={**JSON, "Origin": "https://busos.example"}
        )
        assert response.headers["access-control-allow-origin"] == "https://busos.example"
        assert response.headers["vary"] == "Origin"
    # Only the signup addresses answer cross-origin.
    assert "access-control-allow-origin" not in client.get("/healthz").headers
