"""Signups for several campaigns: POST /webhook/campaigns/<slug>/signup, the original paths
on the default campaign, the Prefect path's `campaign` parameter, the campaign named in
each signup's `.request` file, confirmation clicks per campaign, and /health's list.

The campaigns directory is a temporary copy of the shipped campaigns plus a broken folder,
as `XMAS_CAMPAIGNS_DIR` (no `XMAS_CAMPAIGN_FILE`).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from xmas_pipeline.adapters.inbox import Inbox, InboxFile, utc_day
from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR
from xmas_pipeline.core.optin import make_confirm_token, read_confirmation
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.services.inbox_days import read_signup_day
from xmas_pipeline.settings import Settings

SECRET = "campaign-signups-confirm-secret"
DEFAULT, OTHER, BROKEN = "christmas-2025", "christmas-2026", "broken-one"
PLAIN = "/webhook/christmas-signup"
FLOW_RUN = "/api/deployments/0b6c0f36-5e0b-4d7e-9a57-3f1f1b2c9d41/create_flow_run"


def campaign_url(slug: str) -> str:
    return f"/webhook/campaigns/{slug}/signup"


def signup(email: str = "jane@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Jane",
        "business_name": "Acme Plumbing",
        "assessment_score": 52,
        "red_systems": 1,
        **extra,
    }


def campaigns_dir(root: Path, closed: str | None = None) -> Path:
    """Copies of the shipped campaigns and one broken folder; `closed`: a campaign whose
    signups closed long ago (its dates moved to 2020, so the real clock never matters)."""
    directory = root / "campaigns"
    for slug in (DEFAULT, OTHER):
        shutil.copytree(SHIPPED_CAMPAIGNS_DIR / slug, directory / slug)
    if closed is not None:
        file = directory / closed / "campaign.yaml"
        text = file.read_text(encoding="utf-8")
        start = next(line for line in text.splitlines() if line.startswith("start_date:"))
        file.write_text(
            text.replace(start, 'start_date: "2020-01-01"\nsignups_close: "2020-01-02"'),
            encoding="utf-8",
        )
    broken = directory / BROKEN
    broken.mkdir()
    (broken / "campaign.yaml").write_text("name: Broken\nslug: broken-one\nsteps: 7\n")
    return directory


def make_client(tmp_path: Path, closed: str | None = None, **overrides: Any) -> TestClient:
    settings = Settings.of(
        home=tmp_path,
        inbox_url=str(tmp_path / "inbox"),
        campaigns_dir=campaigns_dir(tmp_path, closed),
        unsubscribe_secret=SECRET,
        **overrides,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox")


def signup_files(tmp_path: Path) -> list[InboxFile]:
    box = inbox(tmp_path)
    return [item for day in box.days("signups") for item in box.files("signups", day)]


def campaigns_by_email(tmp_path: Path) -> dict[str, str | None]:
    """What ingestion reads: each signup's campaign, from its `.request` file."""
    batch = read_signup_day(inbox(tmp_path), utc_day())
    assert batch.rejected == []
    return {e.contact_key: e.request.get("campaign") for e in batch.events}


# -- one path per campaign ------------------------------------------------------------------


def test_each_campaign_takes_signups_and_its_sidecar_names_it(
    client: TestClient, tmp_path: Path
) -> None:
    answers = {
        slug: client.post(campaign_url(slug), json=signup(f"{slug}@example.com"))
        for slug in (DEFAULT, OTHER)
    }
    for answer in answers.values():
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
        assert "enrolled" not in answer.json()
    assert answers[DEFAULT].json()["campaign"] == "Christmas 2025"
    assert answers[OTHER].json()["campaign"] == "Christmas 2026"
    assert campaigns_by_email(tmp_path) == {
        "christmas-2025@example.com": DEFAULT,
        "christmas-2026@example.com": OTHER,
    }
    # The rest of the request details are kept as before.
    for item in signup_files(tmp_path):
        request = inbox(tmp_path).request_of(item)
        assert request["ip"] == "testclient" and "user_agent" in request


def test_an_unknown_slug_is_404_listing_the_campaigns(client: TestClient, tmp_path: Path) -> None:
    answer = client.post(campaign_url("christmas-2099"), json=signup())
    assert answer.status_code == 404
    assert answer.json() == {
        "status": "rejected",
        "reason": "unknown campaign",
        "campaigns": [DEFAULT, OTHER],
        "unavailable": [BROKEN],
    }
    assert signup_files(tmp_path) == []


@pytest.mark.parametrize(
    "slug",
    [
        "Christmas-2025",  # a slug is lower case
        "christmas--2025",
        "-christmas",
        "x" * 5000,
        "%3Cscript%3Ealert(1)%3C%5Cscript%3E",
        "christmas-2025%00",
        "%2e%2e",
    ],
)
def test_an_invalid_slug_is_404_and_never_echoed(
    client: TestClient, tmp_path: Path, slug: str
) -> None:
    answer = client.post(campaign_url(slug), json=signup())
    assert answer.status_code == 404
    assert answer.json()["reason"] == "unknown campaign"
    assert answer.json()["campaigns"] == [DEFAULT, OTHER]
    assert len(answer.content) < 200
    assert "script" not in answer.text and "xxxxx" not in answer.text
    assert signup_files(tmp_path) == []


@pytest.mark.parametrize("path", ["/webhook/campaigns/../signup", "/webhook/campaigns/a/b/signup"])
def test_paths_that_are_not_one_slug_are_404(client: TestClient, tmp_path: Path, path: str) -> None:
    assert client.post(path, json=signup()).status_code == 404
    assert signup_files(tmp_path) == []


def test_a_broken_campaign_is_503_naming_its_file_and_reason(
    client: TestClient, tmp_path: Path
) -> None:
    answer = client.post(campaign_url(BROKEN), json=signup())
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "300"
    reason = answer.json()["reason"]
    assert reason.startswith(f"campaign {BROKEN} is unavailable: {BROKEN}/campaign.yaml: ")
    assert "steps" in reason  # the field at fault
    assert str(tmp_path) not in answer.text  # where the server keeps its files is not shown
    assert signup_files(tmp_path) == []
    # The others are still served.
    assert client.post(campaign_url(OTHER), json=signup()).status_code == 202


def test_the_checks_of_the_original_path_apply(tmp_path: Path) -> None:
    client = make_client(
        tmp_path,
        signup_token="campaign-path-token",
        signup_allowed_origins="https://www.example.com",
        signup_rate_per_ip="3/hour",
    )
    url = campaign_url(OTHER)
    bearer = {"Authorization": "Bearer campaign-path-token"}
    assert client.post(url, json=signup()).status_code == 401
    refused = client.post(url, json=signup(), headers={**bearer, "Origin": "https://evil.test"})
    assert refused.status_code == 403
    assert client.post(url, json={"email": "x"}, headers=bearer).status_code == 422
    assert client.post(url, content=b"x" * 70_000, headers=bearer).status_code == 413
    preflight = client.options(url, headers={"Origin": "https://www.example.com"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://www.example.com"
    # The per-client rate counted three of the requests above (a refused origin is turned
    # away before it is counted): the next one waits.
    limited = client.post(url, json=signup(), headers=bearer)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert signup_files(tmp_path) == []


def test_signups_close_of_one_campaign_leaves_the_others_answer(tmp_path: Path) -> None:
    client = make_client(tmp_path, closed=OTHER)
    closed = client.post(campaign_url(OTHER), json=signup("late@example.com"))
    assert closed.status_code == 202
    assert closed.json()["enrolled"] is False
    assert closed.json()["reason"] == "campaign closed"
    for url in (campaign_url(DEFAULT), PLAIN):
        open_answer = client.post(url, json=signup("on-time@example.com"))
        assert open_answer.status_code == 202
        assert "enrolled" not in open_answer.json()
    # Kept all the same, under its campaign.
    assert campaigns_by_email(tmp_path)["late@example.com"] == OTHER


# -- the original paths ---------------------------------------------------------------------


def test_the_original_path_writes_the_default_campaign(client: TestClient, tmp_path: Path) -> None:
    # A `campaign` key in the body is kept in the file but does not choose the campaign.
    answer = client.post(PLAIN, json=signup(campaign=OTHER))
    assert answer.status_code == 202
    assert answer.json()["campaign"] == "Christmas 2025"
    assert campaigns_by_email(tmp_path) == {"jane@example.com": DEFAULT}


def test_the_original_path_follows_the_configured_default(tmp_path: Path) -> None:
    client = make_client(tmp_path, default_campaign=OTHER)
    assert client.post(PLAIN, json=signup()).json()["campaign"] == "Christmas 2026"
    assert client.post(FLOW_RUN, json={"parameters": signup("b@example.com")}).status_code == 202
    assert campaigns_by_email(tmp_path) == {"jane@example.com": OTHER, "b@example.com": OTHER}


def test_a_broken_default_answers_503_and_the_others_are_served(tmp_path: Path) -> None:
    client = make_client(tmp_path, default_campaign=BROKEN)
    for answer in (
        client.post(PLAIN, json=signup()),
        client.post(FLOW_RUN, json={"parameters": signup()}),
    ):
        assert answer.status_code == 503
        assert f"{BROKEN}/campaign.yaml" in answer.json()["reason"]
    assert client.post(campaign_url(OTHER), json=signup()).status_code == 202
    assert client.post(FLOW_RUN, json={"parameters": signup(campaign=DEFAULT)}).status_code == 202
    assert client.get("/health").json()["campaign"] == BROKEN


def test_a_missing_default_folder_is_503_not_a_failed_start(tmp_path: Path) -> None:
    client = make_client(tmp_path, default_campaign="christmas-2030")
    answer = client.post(PLAIN, json=signup())
    assert answer.status_code == 503
    assert "no folder christmas-2030/" in answer.json()["reason"]
    assert client.post(campaign_url(DEFAULT), json=signup()).status_code == 202


def test_the_prefect_path_without_a_campaign_is_the_default(
    client: TestClient, tmp_path: Path
) -> None:
    answer = client.post(FLOW_RUN, json={"parameters": signup()})
    assert answer.status_code == 202
    assert answer.json()["campaign"] == "Christmas 2025"
    null = client.post(FLOW_RUN, json={"parameters": signup("null@example.com", campaign=None)})
    assert null.status_code == 202
    assert campaigns_by_email(tmp_path) == {
        "jane@example.com": DEFAULT,
        "null@example.com": DEFAULT,
    }


def test_the_prefect_path_names_another_campaign(client: TestClient, tmp_path: Path) -> None:
    parameters = signup(campaign=OTHER)
    answer = client.post(FLOW_RUN, json={"parameters": parameters})
    assert answer.status_code == 202
    assert answer.json()["campaign"] == "Christmas 2026"
    assert campaigns_by_email(tmp_path) == {"jane@example.com": OTHER}
    # The file holds the parameters as sent, the campaign parameter included.
    (item,) = signup_files(tmp_path)
    assert json.loads(inbox(tmp_path).read(item)) == parameters


@pytest.mark.parametrize(
    ("campaign", "status"),
    [("christmas-2099", 404), ("x" * 5000, 404), (BROKEN, 503), (7, 422), (["a"], 422)],
)
def test_the_prefect_paths_campaign_must_be_served(
    client: TestClient, tmp_path: Path, campaign: Any, status: int
) -> None:
    answer = client.post(FLOW_RUN, json={"parameters": signup(campaign=campaign)})
    assert answer.status_code == status
    if status == 404:
        assert answer.json()["campaigns"] == [DEFAULT, OTHER]
        assert "xxxxx" not in answer.text
    if status == 422:
        assert "campaign" in answer.json()["errors"]
    assert signup_files(tmp_path) == []


# -- confirmation clicks --------------------------------------------------------------------


def confirm_path(campaign: str) -> str:
    expires = datetime.now(UTC) + timedelta(days=7)
    token = make_confirm_token("jane@example.com", campaign, "signup:e1", expires, SECRET)
    return f"/confirm?token={token}"


def test_a_click_for_another_campaign_confirms_in_it(client: TestClient, tmp_path: Path) -> None:
    path = confirm_path(OTHER)
    assert client.get(path).status_code == 200
    answer = client.post(path, headers={"User-Agent": "Thunderbird/128"})
    assert answer.status_code == 200 and "confirmed" in answer.text
    (item,) = signup_files(tmp_path)
    box = inbox(tmp_path)
    request = box.request_of(item)
    assert request["campaign"] == OTHER and request["user_agent"] == "Thunderbird/128"
    click = read_confirmation(
        json.loads(box.read(item)), SECRET, received_at=datetime.now(UTC), source=item.ref
    )
    assert click.claim.campaign == OTHER
    # The default campaign's links work as before, and say so too.
    assert client.post(confirm_path(DEFAULT)).status_code == 200
    requests = sorted(box.request_of(item)["campaign"] for item in signup_files(tmp_path))
    assert requests == [DEFAULT, OTHER]


def test_a_click_for_a_campaign_not_served_stores_nothing(
    client: TestClient, tmp_path: Path
) -> None:
    for method in (client.get, client.post):
        unknown = method(confirm_path("christmas-2099"))
        assert unknown.status_code == 400 and "not valid" in unknown.text
        broken = method(confirm_path(BROKEN))
        assert broken.status_code == 503 and broken.headers["retry-after"] == "300"
    assert signup_files(tmp_path) == []


# -- health and the one-file set-up ---------------------------------------------------------


def test_health_lists_the_campaigns_and_the_broken_ones(client: TestClient, tmp_path: Path) -> None:
    answer = client.get("/health").json()
    assert answer["campaign"] == "Christmas 2025"
    rows = {row["slug"]: row for row in answer["campaigns"]}
    assert rows[DEFAULT] == {
        "slug": DEFAULT,
        "default": True,
        "name": "Christmas 2025",
        "status": "ok",
    }
    assert rows[OTHER]["status"] == "ok" and rows[OTHER]["default"] is False
    assert rows[BROKEN]["status"] == "broken"
    assert rows[BROKEN]["problem"].startswith(f"{BROKEN}/campaign.yaml: ")
    assert str(tmp_path) not in json.dumps(answer)


def test_a_campaign_file_is_the_only_campaign(tmp_path: Path) -> None:
    file = campaigns_dir(tmp_path) / OTHER / "campaign.yaml"
    client = TestClient(
        create_app(
            Settings.of(home=tmp_path, inbox_url=str(tmp_path / "inbox"), campaign_file=str(file))
        )
    )
    assert client.post(PLAIN, json=signup()).json()["campaign"] == "Christmas 2026"
    assert client.post(campaign_url(OTHER), json=signup("b@example.com")).status_code == 202
    unknown = client.post(campaign_url(DEFAULT), json=signup())
    assert unknown.status_code == 404 and unknown.json()["campaigns"] == [OTHER]
    assert campaigns_by_email(tmp_path) == {"jane@example.com": OTHER, "b@example.com": OTHER}


def test_a_broken_campaign_file_answers_503_and_keeps_the_details_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "campaign.yaml"
    file.write_text("name: Secretive\nsteps: not-a-list-value-xyz\n")
    settings = Settings.of(
        home=tmp_path, inbox_url=str(tmp_path / "inbox"), campaign_file=str(file)
    )
    client = TestClient(create_app(settings))
    answer = client.post(PLAIN, json=signup())
    assert answer.status_code == 503
    assert "XMAS_CAMPAIGN_FILE" in answer.json()["reason"]
    assert "not-a-list-value-xyz" not in answer.text and str(tmp_path) not in answer.text
    assert "could not be loaded" in caplog.text
    # Everything else the intake does is still up.
    assert client.get("/healthz").status_code == 200
