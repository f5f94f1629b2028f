"""GET/POST /confirm: double opt-in links on the intake, and the request details a signup
keeps beside its inbox file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.core.optin import make_confirm_token, read_confirmation
from xmas_pipeline.core.unsubscribe import SigningKeys, make_token
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.services.inbox_days import read_signup_day
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.support.pipeline_env import signup

SECRET = "confirm-test-secret"
CAMPAIGN = "christmas-2025"


def client(tmp_path: Path) -> TestClient:
    settings = Settings.of(
        home=tmp_path, inbox_url=str(tmp_path / "inbox"), unsubscribe_secret=SECRET
    )
    return TestClient(create_app(settings))


def link(
    expires: datetime | None = None, campaign: str = CAMPAIGN, subject: str = "signup:e1"
) -> str:
    when = expires or datetime.now(UTC) + timedelta(days=7)
    token = make_confirm_token("jane@example.com", campaign, subject, when, SECRET)
    return f"/confirm?token={token}"


def signup_files(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_bytes())
        for p in sorted((tmp_path / "inbox" / "signups").glob("*/*.json"))
    ]


def test_get_shows_a_button_and_stores_nothing(tmp_path: Path) -> None:
    response = client(tmp_path).get(link())
    assert response.status_code == 200
    assert "jane@example.com" in response.text
    assert 'method=post action="?token=' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert signup_files(tmp_path) == []


def test_post_records_the_click_with_the_clients_address_and_agent(tmp_path: Path) -> None:
    path = link()
    before = datetime.now(UTC)
    response = client(tmp_path).post(
        path, headers={"User-Agent": "Thunderbird/128", "X-Forwarded-For": "192.0.2.44"}
    )
    assert response.status_code == 200 and "confirmed" in response.text
    [event] = signup_files(tmp_path)
    assert event["type"] == "signup.confirmed"
    assert event["data"]["email"] == "jane@example.com"
    assert event["data"]["ip"] == "testclient"
    assert event["data"]["user_agent"] == "Thunderbird/128"
    assert event["data"]["forwarded_for"] == "192.0.2.44"  # a claim, kept as one
    assert datetime.fromisoformat(event["created_at"]) >= before
    # What ingestion reads back from it: the same claim, checked again.
    click = read_confirmation(event, SECRET, received_at=datetime.now(UTC), source="s")
    assert click.claim.subject == "signup:e1" and click.forwarded_for == "192.0.2.44"


def test_bad_links_get_a_clear_400_and_store_nothing(tmp_path: Path) -> None:
    app = client(tmp_path)
    good = link().split("token=", 1)[1]
    payload, mac, key_id = good.split(".")
    for path in (
        "/confirm",
        "/confirm?token=nonsense",
        f"/confirm?token={payload}.{mac[::-1]}.{key_id}",
        f"/confirm?token={make_token('jane@example.com', SigningKeys.of(SECRET))}",
        link(campaign="another-campaign"),
    ):
        for method in (app.get, app.post):
            response = method(path)
            assert response.status_code == 400, path
            assert "not valid" in response.text
    assert signup_files(tmp_path) == []


def test_an_expired_link_says_so(tmp_path: Path) -> None:
    app = client(tmp_path)
    expired = link(expires=datetime.now(UTC) - timedelta(seconds=1))
    for method in (app.get, app.post):
        response = method(expired)
        assert response.status_code == 400
        assert "expired" in response.text
    assert signup_files(tmp_path) == []


def test_a_signup_keeps_the_request_beside_its_file_and_ingestion_reads_it(
    tmp_path: Path,
) -> None:
    app = client(tmp_path)
    answer = app.post(
        "/webhook/christmas-signup",
        json=signup("sam@example.com"),
        headers={"User-Agent": "Firefox/140", "X-Forwarded-For": "198.51.100.7"},
    )
    assert answer.status_code == 202
    inbox = Inbox(tmp_path / "inbox")
    # A file dropped by hand (or written by an older release) has no request details.
    inbox.write("signups", json.dumps(signup("old@example.com")).encode())
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    batch = read_signup_day(inbox, day)
    by_key = {e.contact_key: e for e in batch.events}
    assert by_key["sam@example.com"].request == {
        "ip": "testclient",
        "user_agent": "Firefox/140",
        "forwarded_for": "198.51.100.7",
        "campaign": CAMPAIGN,  # the original path's: the default campaign
    }
    assert by_key["old@example.com"].request == {}
    assert batch.rejected == []


def test_a_change_link_says_what_it_confirms(tmp_path: Path) -> None:
    response = client(tmp_path).get(link(subject="change:e2"))
    assert response.status_code == 200
    assert "new name or business name" in response.text


def test_clicks_from_one_client_are_limited_like_signups(tmp_path: Path) -> None:
    """A valid link posted again and again would be an inbox file each time: past the
    per-client rate the click gets 429 with Retry-After, and other clients still confirm."""
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        unsubscribe_secret=SECRET,
        signup_rate_per_ip="2/hour",
    )
    app = create_app(settings)
    one, other = (TestClient(app, client=(ip, 50000)) for ip in ("192.0.2.7", "198.51.100.8"))
    path = link()
    answers = [one.post(path) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) > 0
    assert "Too many confirmations" in answers[2].text
    assert other.post(path).status_code == 200
    assert len(signup_files(tmp_path)) == 3
