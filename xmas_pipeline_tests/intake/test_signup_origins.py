"""Which web pages may post signups from a browser: XMAS_SIGNUP_ALLOWED_ORIGINS. A listed
origin is echoed with `Vary: Origin`; any other gets no allow header, and its posts are
refused (a simple cross-site POST needs no preflight, so CORS alone would not stop it).
Posts without `Origin` (server to server) are not concerned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings, SettingsError
from xmas_pipeline_tests.intake.test_flow_run import URL as FLOW_RUN
from xmas_pipeline_tests.intake.test_flow_run import flow_run
from xmas_pipeline_tests.intake.test_signup import URL, signup

SITE = "https://www.busos.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"), **overrides)
    return TestClient(create_app(settings))


def stored(tmp_path: Path) -> int:
    return len(list((tmp_path / "inbox" / "signups").glob("*/*.json")))


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path, signup_allowed_origins=f"{SITE}, http://localhost:3000")


@pytest.mark.parametrize("path", [URL, FLOW_RUN])
def test_a_listed_origin_is_echoed(client: TestClient, tmp_path: Path, path: str) -> None:
    preflight = client.options(path, headers={"Origin": SITE, **PREFLIGHT})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SITE
    assert preflight.headers["vary"] == "Origin"
    body = flow_run(signup()) if path == FLOW_RUN else signup()
    kwargs: dict[str, Any] = {"content": body} if path == FLOW_RUN else {"json": body}
    answer = client.post(path, headers={"Origin": "http://localhost:3000"}, **kwargs)
    assert answer.status_code == 202
    assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert answer.headers["vary"] == "Origin"
    assert stored(tmp_path) == 1


@pytest.mark.parametrize("origin", ["https://evil.example", "https://busos.example", "null"])
def test_another_origin_gets_no_allow_header_and_stores_nothing(
    client: TestClient, tmp_path: Path, origin: str
) -> None:
    preflight = client.options(URL, headers={"Origin": origin, **PREFLIGHT})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    # A simple POST (text/plain, no preflight), as a hostile page could make a browser send.
    answer = client.post(
        URL,
        content=b'{"email": "x@example.com", "first_name": "X", "assessment_score": 1}',
        headers={"Origin": origin, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 403
    assert answer.json()["reason"] == "this web origin may not post signups"
    assert "access-control-allow-origin" not in answer.headers
    assert answer.headers["vary"] == "Origin"
    assert stored(tmp_path) == 0


def test_server_to_server_posts_without_origin_still_work(
    client: TestClient, tmp_path: Path
) -> None:
    answer = client.post(URL, json=signup())
    assert answer.status_code == 202 and "access-control-allow-origin" not in answer.headers
    assert stored(tmp_path) == 1


def test_by_default_no_page_may_post(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    assert client.post(URL, json=signup(), headers={"Origin": SITE}).status_code == 403
    assert client.post(URL, json=signup()).status_code == 202
    assert client.get("/health").json()["protections"]["signup_allowed_origins"] == []


def test_a_star_allows_every_page(tmp_path: Path) -> None:
    client = make_client(tmp_path, signup_allowed_origins="*")
    answer = client.post(URL, json=signup(), headers={"Origin": "https://anywhere.example"})
    assert answer.status_code == 202 and answer.headers["access-control-allow-origin"] == "*"


def test_other_paths_answer_no_origin(client: TestClient) -> None:
    for path in ("/healthz", "/health"):
        answer = client.get(path, headers={"Origin": SITE})
        assert "access-control-allow-origin" not in answer.headers


def test_a_malformed_list_is_a_settings_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"XMAS_SIGNUP_ALLOWED_ORIGINS": "www.busos.example"})
    assert "XMAS_SIGNUP_ALLOWED_ORIGINS" in str(caught.value)
