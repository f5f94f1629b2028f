"""POST /webhook/resend: Svix-signed Resend events, forged ones and replays."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings

URL = "/webhook/resend"
KEY = b"resend-test-signing-key-32-bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def make_client(tmp_path: Path, secret: str | None = SECRET) -> TestClient:
    settings = Settings.of(
        home=tmp_path, inbox_url=str(tmp_path / "inbox"), resend_webhook_secret=secret
    )
    return TestClient(create_app(settings))


def stored(tmp_path: Path) -> list[bytes]:
    folder = tmp_path / "inbox" / "email-events"
    return [p.read_bytes() for p in sorted(folder.glob("*/*.json"))]


def svix_headers(
    raw: bytes,
    msg_id: str = "msg_2Lh9KRb0pzN4LePd3XiA4dy2dU",
    when: int | None = None,
    key: bytes = KEY,
) -> dict[str, str]:
    """The headers Svix sends: v1 = base64 HMAC-SHA256 of `id.timestamp.body`."""
    timestamp = str(int(time.time()) if when is None else when)
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "Content-Type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": f"v1,{signature}",
    }


def event(kind: str = "email.bounced", **data: Any) -> bytes:
    body = {
        "type": kind,
        "created_at": "2025-12-01T10:00:00.000Z",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "BusOS <hello@busos.example>",
            "to": ["jane@example.com"],
            "subject": "Your assessment results",
            "created_at": "2025-12-01T09:59:58.000Z",
            "tags": {"campaign": "christmas-2025", "step": "email-1", "segment": "CRITICAL"},
            **data,
        },
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "kind", ["email.delivered", "email.bounced", "email.complained", "email.opened"]
)
def test_signed_events_are_stored_byte_for_byte(tmp_path: Path, kind: str) -> None:
    raw = event(kind)
    response = make_client(tmp_path).post(URL, content=raw, headers=svix_headers(raw))
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert response.json()["type"] == kind
    assert stored(tmp_path) == [raw]


def test_one_matching_signature_among_several(tmp_path: Path) -> None:
    raw = event()
    headers = svix_headers(raw)
    headers["svix-signature"] = f"v1,bm9wZQ== {headers['svix-signature']} v2,whatever"
    assert make_client(tmp_path).post(URL, content=raw, headers=headers).status_code == 200


def test_without_a_secret_nothing_is_accepted(tmp_path: Path) -> None:
    raw = event()
    response = make_client(tmp_path, secret=None).post(URL, content=raw, headers=svix_headers(raw))
    assert response.status_code == 503
    assert stored(tmp_path) == []


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_svix_header(tmp_path: Path, missing: str) -> None:
    raw = event()
    headers = svix_headers(raw)
    del headers[missing]
    response = make_client(tmp_path).post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    assert missing in response.json()["reason"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    "tamper",
    ["other-key", "body", "id", "signature-garbage", "no-version", "timestamp-text"],
)
def test_forged_deliveries(tmp_path: Path, tamper: str) -> None:
    raw = event()
    headers = svix_headers(raw)
    if tamper == "other-key":
        headers = svix_headers(raw, key=b"some-other-key")
    elif tamper == "body":
        raw = raw.replace(b"jane@example.com", b"boss@example.com")
    elif tamper == "id":
        headers["svix-id"] = "msg_someoneelse"
    elif tamper == "signature-garbage":
        headers["svix-signature"] = "v1,\u00e9\u00e9\u00e9"
    elif tamper == "no-version":
        headers["svix-signature"] = headers["svix-signature"].removeprefix("v1,")
    elif tamper == "timestamp-text":
        headers["svix-timestamp"] = "yesterday"
    encoded = [(k.lower().encode(), v.encode("utf-8")) for k, v in headers.items()]
    response = make_client(tmp_path).post(URL, content=raw, headers=encoded)
    assert response.status_code == 401
    assert response.json()["status"] == "rejected"
    assert stored(tmp_path) == []


@pytest.mark.parametrize("offset", [-301, -3600, 301, 86_400])
def test_replays_outside_the_tolerance_are_refused(tmp_path: Path, offset: int) -> None:
    raw = event()
    # Correctly signed, but stamped well outside the five-minute window.
    headers = svix_headers(raw, when=int(time.time()) + offset * 2)
    response = make_client(tmp_path).post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    assert "tolerance" in response.json()["reason"]
    assert stored(tmp_path) == []


def test_redelivery_inside_the_window_is_stored_once(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    raw = event()
    headers = svix_headers(raw, msg_id="msg_once")
    assert client.post(URL, content=raw, headers=headers).json()["status"] == "accepted"
    again = client.post(URL, content=raw, headers=headers)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    # Svix retries keep the id but sign afresh: still the same delivery.
    resigned = svix_headers(raw, msg_id="msg_once", when=int(time.time()) - 10)
    assert client.post(URL, content=raw, headers=resigned).json()["status"] == "duplicate"
    assert stored(tmp_path) == [raw]
    other = svix_headers(raw, msg_id="msg_other")
    assert client.post(URL, content=raw, headers=other).json()["status"] == "accepted"
    assert len(stored(tmp_path)) == 2


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 400),
        (b"{not json", 400),
        (b'"a string"', 400),
        (b"[1, 2]", 400),
        (b'{"data": {}}', 400),
        (b'{"type": 5}', 400),
    ],
)
def test_signed_but_unusable_bodies(tmp_path: Path, raw: bytes, status: int) -> None:
    response = make_client(tmp_path).post(URL, content=raw, headers=svix_headers(raw))
    assert response.status_code == status
    assert stored(tmp_path) == []


def test_invalid_utf8_body(tmp_path: Path) -> None:
    raw = b'{"type": "email.bounced", "x": "\xff"}'
    response = make_client(tmp_path).post(URL, content=raw, headers=svix_headers(raw))
    assert response.status_code == 400


def test_huge_body(tmp_path: Path) -> None:
    raw = event(padding="x" * 70_000)
    response = make_client(tmp_path).post(URL, content=raw, headers=svix_headers(raw))
    assert response.status_code == 413
    assert stored(tmp_path) == []


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!not-base64!!!", "plainly wrong"])
def test_malformed_secret_fails_at_start_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.of(inbox_url="/tmp/unused", resend_webhook_secret=bad)
    assert bad not in str(caught.value)
    assert "RESEND_WEBHOOK_SECRET" in str(caught.value)
