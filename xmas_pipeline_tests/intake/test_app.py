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

from xmas_pipeline.core.unsubscribe import make_token
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.intake.http import Reject, read_body
from xmas_pipeline.settings import Settings

TOKEN = "signup-token-value-xyz"
UNSUB = "unsubscribe-secret-value-xyz"


def test_healthz(tmp_path: Path) -> None:
    response = TestClient(create_app(Settings.of(inbox_url=str(tmp_path)))).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_unknown_path_is_404(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings.of(inbox_url=str(tmp_path))))
    assert client.post("/webhook/unknown", json={}).status_code == 404


def test_logs_name_accepted_files_and_never_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.of(
        inbox_url=str(tmp_path / "inbox"), signup_token=TOKEN, unsubscribe_secret=UNSUB
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
