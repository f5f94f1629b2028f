"""The intake as a whole: settings from the environment, health, routing, logging."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Message

import xmas_pipeline
from xmas_pipeline.core.unsubscribe import make_token
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.intake.http import Reject, read_body
from xmas_pipeline.settings import Settings

TOKEN = "signup-token-value-xyz"
UNSUB = "unsubscribe-secret-value-xyz"


def test_healthz(tmp_path: Path) -> None:
    response = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=str(tmp_path)))).get(
        "/healthz"
    )
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# Every integration's secret or credential URL, each a distinctive value to look for.
CONFIGURED = {
    "notion_token": "ntn_health_secret_value",
    "resend_api_key": "re_health_secret_value",
    "calcom_webhook_secret": "calcom-health-secret-value",
    "calcom_api_key": "cal_live_health_secret_value",
    "resend_webhook_secret": "whsec_aGVhbHRoLXNlY3JldC12YWx1ZQ==",
    "signup_token": "signup-health-secret-value",
    "alert_webhook_url": "https://discord.com/api/webhooks/1/health-secret-value",
}
INTEGRATIONS = {
    "notion",
    "resend",
    "calcom_webhook_signing",
    "calcom_api_polling",
    "resend_webhook_signing",
    "signup_token",
    "alert_webhook",
}


def test_health_with_nothing_configured(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=str(tmp_path))))
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "campaign": "Christmas 2025",
        # The shipped campaigns, the default marked.
        "campaigns": [
            {"slug": "christmas-2025", "default": True, "name": "Christmas 2025", "status": "ok"},
            {"slug": "christmas-2026", "default": False, "name": "Christmas 2026", "status": "ok"},
        ],
        "version": xmas_pipeline.__version__,
        "integrations": dict.fromkeys(INTEGRATIONS, False),
        "protections": {
            "signup_rate_per_ip": "30/hour",
            "signup_rate_per_email": "5/hour",
            "captcha": "off",
            "signup_allowed_origins": [],
        },
    }


@pytest.mark.parametrize("field", list(CONFIGURED))
def test_health_names_each_integration_configured(tmp_path: Path, field: str) -> None:
    settings = Settings.of(home=tmp_path, inbox_url=str(tmp_path), **{field: CONFIGURED[field]})
    integrations = TestClient(create_app(settings)).get("/health").json()["integrations"]
    assert [name for name, on in integrations.items() if on] == [
        {
            "notion_token": "notion",
            "resend_api_key": "resend",
            "calcom_webhook_secret": "calcom_webhook_signing",
            "calcom_api_key": "calcom_api_polling",
            "resend_webhook_secret": "resend_webhook_signing",
            "signup_token": "signup_token",
            "alert_webhook_url": "alert_webhook",
        }[field]
    ]


def test_health_never_shows_a_secret_or_a_url(tmp_path: Path) -> None:
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path),
        unsubscribe_secret="unsubscribe-health-secret-value",
        notion_base_url="https://notion.internal.example/health-secret-value",
        **CONFIGURED,
    )
    response = TestClient(create_app(settings)).get("/health")
    assert response.json()["integrations"] == dict.fromkeys(INTEGRATIONS, True)
    assert "secret-value" not in response.text and "secret_value" not in response.text
    assert "http" not in response.text and "aGVhbHRo" not in response.text
    # Not even the signup token guards it: health checks carry no credentials.
    assert response.status_code == 200


def test_unknown_path_is_404(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(home=tmp_path, inbox_url=str(tmp_path))))
    assert client.post("/webhook/unknown", json={}).status_code == 404


def test_logs_name_accepted_files_and_never_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        signup_token=TOKEN,
        unsubscribe_secret=UNSUB,
    )
    client = TestClient(create_app(settings))
    unsubscribe_token = make_token("jane@example.com", UNSUB)
    body = {"email": "jane@example.com", "first_name": "Jane", "assessment_score": 50}
    with caplog.at_level(logging.INFO, logger="xmas_pipeline"):
        ok = client.post(
            "/webhook/christmas-signup",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        client.post(
            "/webhook/christmas-signup",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}-wrong"},
        )
        client.post(f"/unsubscribe?token={unsubscribe_token}")
        client.post(f"/unsubscribe?token={unsubscribe_token}-forged")
    assert ok.status_code == 202
    text = caplog.text
    assert "accepted signups signups/" in text and ok.json()["event_id"] in text
    assert "accepted email-events email-events/" in text
    assert "rejected POST /webhook/christmas-signup: 401" in text
    for secret in (TOKEN, UNSUB, unsubscribe_token):
        assert secret not in text


def _request(receive: Any) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def test_a_body_that_never_arrives_gets_408() -> None:
    async def never() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(Reject) as caught:
        anyio.run(read_body, _request(never), 1024, 0.05)
    assert caught.value.status == 408


def test_a_client_that_hangs_up_mid_body_gets_400() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"email": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    with pytest.raises(Reject) as caught:
        anyio.run(read_body, _request(receive), 1024)
    assert caught.value.status == 400
