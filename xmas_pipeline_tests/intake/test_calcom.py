"""POST /webhook/calcom-booking: Cal.com webhooks, signed and unsigned, valid and hostile."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings

URL = "/webhook/calcom-booking"
SECRET = "cal-webhook-secret"
# Starlette's test client calls itself "testclient"; unsigned webhooks are taken only from
# loopback, so the tests say where each request comes from.
LOOPBACK = ("127.0.0.1", 50000)


def make_client(
    tmp_path: Path, secret: str | None = None, client: tuple[str, int] = LOOPBACK
) -> TestClient:
    settings = Settings.of(
        home=tmp_path, inbox_url=str(tmp_path / "inbox"), calcom_webhook_secret=secret
    )
    return TestClient(create_app(settings), client=client)


def stored(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / "bookings").glob("*/*.json"))]


def sign(raw: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def booking(trigger: str = "BOOKING_CREATED", **payload_overrides: Any) -> dict[str, Any]:
    """A webhook body in Cal.com's documented shape."""
    payload: dict[str, Any] = {
        "type": "diagnostic",
        "title": "Diagnostic call between BusOS and Jane Doe",
        "startTime": "2025-12-10T15:00:00Z",
        "endTime": "2025-12-10T15:45:00Z",
        "organizer": {
            "id": 5,
            "name": "BusOS",
            "email": "hello@busos.example",
            "timeZone": "America/Toronto",
            "language": {"locale": "en"},
        },
        "attendees": [
            {
                "email": "Jane@Example.com",
                "name": "Jane Doe",
                "timeZone": "America/Vancouver",
                "language": {"locale": "en"},
            }
        ],
        "uid": "bFJeNb2uX8ANpT3JL5EfXw",
        "bookingId": 91,
        "metadata": {"videoCallUrl": "https://app.cal.com/video/bFJeNb2uX8ANpT3JL5EfXw"},
        "status": "ACCEPTED",
    }
    if trigger == "BOOKING_RESCHEDULED":
        payload.update(
            uid="newUid123",
            rescheduleUid="bFJeNb2uX8ANpT3JL5EfXw",
            rescheduleStartTime="2025-12-10T15:00:00Z",
            startTime="2025-12-12T16:00:00Z",
            endTime="2025-12-12T16:45:00Z",
        )
    if trigger == "BOOKING_CANCELLED":
        payload.update(cancellationReason="Conflict", status="CANCELLED")
    payload.update(payload_overrides)
    return {"triggerEvent": trigger, "createdAt": "2025-12-01T09:30:00.538Z", "payload": payload}


def raw_of(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def post(client: TestClient, raw: bytes, signature: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Cal-Signature-256"] = signature
    return client.post(URL, content=raw, headers=headers)


# -- stored triggers ------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED"])
@pytest.mark.parametrize("secret", [None, SECRET])
def test_booking_triggers_are_stored_byte_for_byte(
    tmp_path: Path, trigger: str, secret: str | None
) -> None:
    client = make_client(tmp_path, secret)
    raw = raw_of(booking(trigger))
    response = post(client, raw, sign(raw) if secret else None)
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted"
    assert answer["triggerEvent"] == trigger
    assert answer["uid"] == booking(trigger)["payload"]["uid"]
    assert stored(tmp_path) == [raw]


def test_cancellation_without_start_time(tmp_path: Path) -> None:
    body = booking("BOOKING_CANCELLED")
    del body["payload"]["startTime"], body["payload"]["endTime"]
    assert post(make_client(tmp_path), raw_of(body)).status_code == 200


def test_unicode_and_hostile_attendee_names_are_kept_raw(tmp_path: Path) -> None:
    body = booking()
    body["payload"]["attendees"][0]["name"] = "Zoë <b>Ñúñez</b>\r\nBcc: x@evil.example 🎄"
    raw = raw_of(body)
    assert post(make_client(tmp_path), raw).status_code == 200
    assert stored(tmp_path) == [raw]  # the pipeline's parser cleans names on ingestion


def test_uppercase_hex_signature_is_accepted(tmp_path: Path) -> None:
    raw = raw_of(booking())
    assert post(make_client(tmp_path, SECRET), raw, sign(raw).upper()).status_code == 200


# -- ignored triggers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {
            "triggerEvent": "PING",
            "createdAt": "2025-12-01T09:30:00Z",
            "payload": {"type": "Test", "title": "Test trigger event"},
        },
        booking("MEETING_ENDED"),
        booking("BOOKING_REQUESTED"),
        {"triggerEvent": "SOMETHING_NEW"},
    ],
)
def test_other_triggers_are_ignored(tmp_path: Path, body: dict[str, Any]) -> None:
    response = post(make_client(tmp_path), raw_of(body))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "triggerEvent": body["triggerEvent"]}
    assert stored(tmp_path) == []


def test_ping_is_signature_checked_too(tmp_path: Path) -> None:
    client = make_client(tmp_path, SECRET)
    raw = raw_of({"triggerEvent": "PING", "payload": {}})
    assert post(client, raw).status_code == 401
    assert post(client, raw, sign(raw)).json()["status"] == "ignored"


# -- missing or broken booking data ---------------------------------------------------------


def without(body: dict[str, Any], *path: str | int) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (without(booking(), "payload", "attendees"), "attendees"),
        (booking(attendees=[]), "attendees"),
        (booking(attendees="jane@example.com"), "attendees"),
        (booking(attendees=["jane@example.com"]), "attendees"),
        (without(booking(), "payload", "attendees", 0, "email"), "email"),
        (booking(attendees=[{"email": "", "name": "Jane"}]), "email"),
        (booking(attendees=[{"email": "not-an-email", "name": "Jane"}]), "email"),
        (booking(attendees=[{"email": "a@b.co\r\nBcc: x@y.z", "name": "J"}]), "email"),
        (booking(attendees=[{"email": 42}]), "email"),
        (without(booking(), "payload", "startTime"), "startTime"),
        (booking(startTime="next tuesday"), "startTime"),
        (booking(startTime=1733843000), "startTime"),
        (without(booking(), "payload", "uid"), "uid"),
        (booking(uid="../../etc/passwd"), "uid"),
        (booking(uid=""), "uid"),
        (without(booking("BOOKING_RESCHEDULED"), "payload", "rescheduleUid"), "rescheduleUid"),
        (without(booking("BOOKING_CANCELLED"), "payload", "attendees"), "email"),
        (without(booking("BOOKING_CANCELLED"), "payload", "uid"), "uid"),
        (without(booking(), "payload"), "payload"),
        ({"triggerEvent": "BOOKING_CREATED", "payload": "nope"}, "payload"),
        ({"payload": booking()["payload"]}, "triggerEvent"),
        ({"triggerEvent": 7, "payload": {}}, "triggerEvent"),
        ([booking()], "triggerEvent"),
    ],
)
def test_unusable_bookings_get_400_with_a_reason(tmp_path: Path, body: Any, reason: str) -> None:
    response = post(make_client(tmp_path), raw_of(body))
    assert response.status_code == 400
    answer = response.json()
    assert answer["status"] == "rejected"
    assert reason in answer["reason"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"triggerEvent": NaN}', b"\xff\xfe\x00"])
def test_bodies_that_are_not_json(tmp_path: Path, raw: bytes) -> None:
    response = post(make_client(tmp_path), raw)
    assert response.status_code == 400
    assert stored(tmp_path) == []


def test_huge_body(tmp_path: Path) -> None:
    raw = raw_of(booking(description="x" * 70_000))
    assert post(make_client(tmp_path), raw).status_code == 413
    assert post(make_client(tmp_path, SECRET), raw, sign(raw)).status_code == 413
    assert stored(tmp_path) == []


def test_form_content_type_is_415(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.post(
        URL,
        content=raw_of(booking()),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


# -- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "0" * 64,
        "sha256=" + "0" * 64,
        "not hex at all",
        "é" * 64,
    ],
)
def test_missing_or_wrong_signature(tmp_path: Path, signature: str | None) -> None:
    raw = raw_of(booking())
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    if signature is not None:
        headers.append((b"x-cal-signature-256", signature.encode("utf-8")))
    response = make_client(tmp_path, SECRET).post(URL, content=raw, headers=headers)
    assert response.status_code == 401
    assert stored(tmp_path) == []


def test_signature_of_another_body_or_secret(tmp_path: Path) -> None:
    client = make_client(tmp_path, SECRET)
    raw = raw_of(booking())
    tampered = raw.replace(b"2025-12-10T15:00:00Z", b"2025-12-10T16:00:00Z")
    assert tampered != raw
    assert post(client, tampered, sign(raw)).status_code == 401
    assert post(client, raw, sign(raw, "other-secret")).status_code == 401
    # Re-serialising the JSON changes the bytes: the check is over the raw body.
    reserialised = json.dumps(json.loads(raw), indent=2).encode()
    assert post(client, reserialised, sign(raw)).status_code == 401
    assert stored(tmp_path) == []


def test_signature_is_checked_before_parsing(tmp_path: Path) -> None:
    client = make_client(tmp_path, SECRET)
    assert post(client, b"{not json").status_code == 401
    assert post(client, b"{not json", sign(b"{not json")).status_code == 400


# -- without a secret: loopback only, never through a proxy ---------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.10.20.30", "::1", "::ffff:127.0.0.1"])
def test_unsigned_from_loopback_is_accepted(tmp_path: Path, host: str) -> None:
    raw = raw_of(booking())
    assert post(make_client(tmp_path, client=(host, 50000)), raw).status_code == 200
    assert stored(tmp_path) == [raw]


@pytest.mark.parametrize(
    "host", ["testclient", "203.0.113.7", "10.0.0.5", "192.168.1.20", "2001:db8::1", "0.0.0.0"]
)
def test_unsigned_from_elsewhere_is_401(tmp_path: Path, host: str) -> None:
    response = post(make_client(tmp_path, client=(host, 50000)), raw_of(booking()))
    assert response.status_code == 401
    assert "CALCOM_WEBHOOK_SECRET" in response.json()["reason"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("X-Real-IP", "127.0.0.1"),
        ("x-real-ip", ""),
    ],
)
def test_unsigned_through_a_proxy_is_401(tmp_path: Path, header: str, value: str) -> None:
    raw = raw_of(booking())
    response = make_client(tmp_path).post(
        URL, content=raw, headers={"Content-Type": "application/json", header: value}
    )
    assert response.status_code == 401
    assert "CALCOM_WEBHOOK_SECRET" in response.json()["reason"]
    assert stored(tmp_path) == []


def test_unsigned_ping_from_elsewhere_is_401_too(tmp_path: Path) -> None:
    client = make_client(tmp_path, client=("203.0.113.7", 50000))
    assert post(client, raw_of({"triggerEvent": "PING", "payload": {}})).status_code == 401


@pytest.mark.parametrize("host", ["203.0.113.7", "testclient"])
def test_signed_is_accepted_from_anywhere_and_through_proxies(tmp_path: Path, host: str) -> None:
    raw = raw_of(booking())
    response = make_client(tmp_path, SECRET, client=(host, 50000)).post(
        URL,
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Cal-Signature-256": sign(raw),
            "X-Forwarded-For": "198.51.100.4",
        },
    )
    assert response.status_code == 200
    assert stored(tmp_path) == [raw]


def test_with_a_secret_loopback_must_sign_too(tmp_path: Path) -> None:
    assert post(make_client(tmp_path, SECRET), raw_of(booking())).status_code == 401
