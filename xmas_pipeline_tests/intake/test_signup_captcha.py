"""The optional bot check on signups (XMAS_CAPTCHA_SECRET), against a fake siteverify that
behaves like Turnstile's and hCaptcha's: missing, rejected, reused and valid tokens, an
unreachable provider, and a token that never reaches the inbox nor a secret the logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.fakes.captcha_verify import CaptchaVerifyServer
from xmas_pipeline_tests.intake.test_flow_run import URL as FLOW_RUN
from xmas_pipeline_tests.intake.test_flow_run import flow_run
from xmas_pipeline_tests.intake.test_signup import URL, signup

SECRET = "0x4AAAAAAA-captcha-secret-value"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=["turnstile", "hcaptcha"])
def provider(request: pytest.FixtureRequest) -> Iterator[CaptchaVerifyServer]:
    with CaptchaVerifyServer(SECRET, request.param) as fake:
        yield fake


def make_client(tmp_path: Path, fake: CaptchaVerifyServer, **overrides: Any) -> TestClient:
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        captcha_secret=SECRET,
        captcha_provider=fake.provider,
        captcha_verify_url=fake.url,
        **overrides,
    )
    return TestClient(create_app(settings), client=("203.0.113.4", 50000))


def stored(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / "signups").glob("*/*.json"))]


def test_a_valid_token_is_checked_once_and_never_stored(
    tmp_path: Path, provider: CaptchaVerifyServer
) -> None:
    client = make_client(tmp_path, provider)
    token = provider.issue()
    answer = client.post(URL, json={**signup(), "captcha_token": token})
    assert answer.status_code == 202
    (check,) = provider.checks
    assert check.success and check.secret_ok and check.remote_ip == "203.0.113.4"
    (raw,) = stored(tmp_path)
    assert token.encode() not in raw and b"captcha" not in raw
    assert json.loads(raw) == signup()
    # Tokens are single-use: the same one again is refused, and nothing more is stored.
    again = client.post(URL, json={**signup(), "captcha_token": token})
    assert again.status_code == 403 and "new challenge" in again.json()["reason"]
    assert len(stored(tmp_path)) == 1


@pytest.mark.parametrize("field", ["captcha_token", "cf-turnstile-response", "h-captcha-response"])
def test_each_token_field_is_taken_at_both_addresses(
    tmp_path: Path, provider: CaptchaVerifyServer, field: str
) -> None:
    client = make_client(tmp_path, provider)
    assert client.post(URL, json={**signup(), field: provider.issue()}).status_code == 202
    # At the Prefect address the token may ride in the signup or beside it.
    inside = flow_run({**signup(email="b@example.com"), field: provider.issue()})
    beside = flow_run(signup(email="c@example.com"), **{field: provider.issue()})
    for body in (inside, beside):
        assert client.post(FLOW_RUN, content=body, headers=JSON).status_code == 202
    files = stored(tmp_path)
    assert len(files) == 3 and not any(field.encode() in raw for raw in files)


def test_a_missing_or_malformed_token_is_refused_before_asking(
    tmp_path: Path, provider: CaptchaVerifyServer
) -> None:
    client = make_client(tmp_path, provider)
    missing = client.post(URL, json=signup())
    assert missing.status_code == 400 and "captcha_token is missing" in missing.json()["reason"]
    for token in ("", 42, "x" * 5000):
        answer = client.post(URL, json={**signup(), "captcha_token": token})
        assert answer.status_code in (400, 403)
    assert provider.checks == [] and stored(tmp_path) == []


def test_a_forged_or_expired_token_is_rejected(tmp_path: Path) -> None:
    now = [0.0]
    with CaptchaVerifyServer(SECRET, "hcaptcha", clock=lambda: now[0]) as fake:
        client = make_client(tmp_path, fake)
        forged = client.post(URL, json={**signup(), "captcha_token": "P1_made-up"})
        assert forged.status_code == 403
        old = fake.issue()
        now[0] += 301  # tokens live 300 s
        expired = client.post(URL, json={**signup(), "captcha_token": old})
        assert expired.status_code == 403
        assert [c.codes for c in fake.checks] == [
            ["invalid-input-response"],
            ["expired-input-response"],
        ]
    assert stored(tmp_path) == []


def test_an_invalid_signup_spends_no_token(tmp_path: Path, provider: CaptchaVerifyServer) -> None:
    client = make_client(tmp_path, provider)
    token = provider.issue()
    bad = client.post(URL, json={**signup(assessment_score=500), "captcha_token": token})
    assert bad.status_code == 422 and provider.checks == []
    assert client.post(URL, json={**signup(), "captcha_token": token}).status_code == 202


@pytest.mark.parametrize("status", [500, 502, 429])
def test_a_provider_in_trouble_is_503_with_retry_after(
    tmp_path: Path, provider: CaptchaVerifyServer, status: int
) -> None:
    client = make_client(tmp_path, provider)
    provider.fail_with(status)
    answer = client.post(URL, json={**signup(), "captcha_token": provider.issue()})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
    assert "please retry" in answer.json()["reason"]
    assert stored(tmp_path) == []
    provider.fail_with(None)  # the visitor retries with a fresh token
    assert client.post(URL, json={**signup(), "captcha_token": provider.issue()}).status_code == 202


def test_an_unreachable_provider_is_503(tmp_path: Path) -> None:
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        captcha_secret=SECRET,
        captcha_verify_url="http://127.0.0.1:9/siteverify",  # nothing listens there
    )
    client = TestClient(create_app(settings))
    answer = client.post(URL, json={**signup(), "captcha_token": "0.token"})
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0
    assert stored(tmp_path) == []


def test_a_wrong_secret_is_ours_and_never_shown(
    tmp_path: Path, provider: CaptchaVerifyServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "0x4AAAAAAA-wrong-secret-value"
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        captcha_secret=wrong,
        captcha_provider=provider.provider,
        captcha_verify_url=provider.url,
    )
    client = TestClient(create_app(settings))
    with caplog.at_level(logging.DEBUG):
        answer = client.post(URL, json={**signup(), "captcha_token": provider.issue()})
        health = client.get("/health")
    # Not the visitor's fault: 503, and the log says why without the secret.
    assert answer.status_code == 503
    assert provider.checks[0].codes == ["invalid-input-secret"]
    assert "invalid-input-secret" in caplog.text
    for text in (caplog.text, answer.text, health.text, repr(settings)):
        assert wrong not in text and "secret-value" not in text
    assert health.json()["protections"]["captcha"] == provider.provider


def test_no_secret_means_no_check(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"))))
    answer = client.post(URL, json={**signup(), "captcha_token": "left-by-the-page"})
    assert answer.status_code == 202
    assert b"left-by-the-page" not in stored(tmp_path)[0]


def test_a_body_with_a_token_and_broken_unicode_is_refused(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"))))
    raw = json.dumps({**signup(business_name="\ud800"), "captcha_token": "t"}).encode()
    answer = client.post(URL, content=raw, headers=JSON)
    assert answer.status_code == 422 and stored(tmp_path) == []
