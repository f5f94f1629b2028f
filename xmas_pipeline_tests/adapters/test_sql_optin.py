"""Double opt-in and the retake rule in the SQL store: rounds of confirmation, held and
pending changes, confirmations applied once, and what `forget` erases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.cli import main
from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.confirm_plan import due_confirmations
from xmas_pipeline.core.optin import Confirmation, ConfirmClaim
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline.core.signup import Signup, SignupEvent

T0 = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
KEY = "jane@example.com"


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def campaign() -> Campaign:
    return load_campaign().model_copy(update={"double_opt_in": True})


def signup(at: datetime, name: str = "Jane", red: int = 0, n: int = 0) -> SignupEvent:
    data = {"email": KEY, "first_name": name, "assessment_score": 50, "red_systems": red}
    return SignupEvent(
        signup=Signup.model_validate(data),
        received_at=at,
        source=f"signups/{at:%Y-%m-%d}/{n:020d}-file.json",
        request={"ip": "203.0.113.9", "user_agent": "Browser/1"},
    )


def click(subject: str, at: datetime, campaign: Campaign) -> Confirmation:
    claim = ConfirmClaim(KEY, campaign.slug, subject, at + timedelta(days=7))
    return Confirmation(claim, at, "198.51.100.1", "Mail/2", f"signups/x/{at.timestamp()}.json")


def row(store: SqlStore, campaign: Campaign) -> dict[str, object]:
    [found] = store.load_sequences(campaign, [KEY]).to_dict("records")
    return found


def confirm_sent(store: SqlStore, campaign: Campaign, subject: str, at: datetime) -> None:
    message_id = f"{campaign.slug}/{KEY}/confirm/{subject.replace(':', '-')}"
    store.record_sent(
        campaign,
        SentRecord(
            message_id=message_id,
            idempotency_key=message_id,
            contact_key=KEY,
            kind="confirm",
            step_id="confirm",
            step_number=0,
            due_at=at,
            sent_at=at,
            provider_id="p",
            segment="OPTIMIZE",
        ),
    )


def test_an_unconfirmed_signup_asks_once_per_link_life(store: SqlStore, campaign: Campaign) -> None:
    report = store.upsert_signups(campaign, [signup(T0, n=1)])
    assert report.created == [KEY] and report.awaiting == [KEY]
    first = str(row(store, campaign)["confirm_subject"])
    assert first == f"signup:{1:020d}-file"
    confirm_sent(store, campaign, first, T0)
    sequences = store.load_sequences(campaign)
    assert due_confirmations(sequences, campaign, T0 + timedelta(hours=1)).empty

    # Posting again within the link's life: no new confirmation, a new name applies (no
    # email was ever written for this sequence's profile).
    again = store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Janet", n=2)])
    assert again.awaiting == [] and again.held == []
    assert row(store, campaign)["first_name"] == "Janet"
    assert row(store, campaign)["confirm_subject"] == first

    # After the link expired unclicked: one more confirmation, for the new signup.
    later = store.upsert_signups(campaign, [signup(T0 + timedelta(days=8), "Janet", n=3)])
    assert later.awaiting == [KEY]
    current = row(store, campaign)
    assert current["confirm_subject"] == f"signup:{3:020d}-file"
    due = due_confirmations(store.load_sequences(campaign), campaign, T0 + timedelta(days=8))
    assert due["confirm_subject"].tolist() == [current["confirm_subject"]]
    # A file older than the open round, ingested late (a day run again): nothing changes.
    late = store.upsert_signups(campaign, [signup(T0 + timedelta(days=2), "Old", n=9)])
    assert late.unchanged == [KEY] and row(store, campaign)["first_name"] == "Janet"

    # The first, expired round's record stays unconfirmed; the new one is confirmed once.
    done = store.apply_confirmations(
        campaign, [click(str(current["confirm_subject"]), T0 + timedelta(days=9), campaign)]
    )
    assert done.started == [KEY]
    assert row(store, campaign)["signup_at"] == T0 + timedelta(days=9)
    records = store.consent_records(campaign).sort_values("requested_at")
    assert records["confirmed_at"].isna().tolist() == [True, False]
    repeat = store.apply_confirmations(
        campaign, [click(str(current["confirm_subject"]), T0 + timedelta(days=9), campaign)]
    )
    assert repeat.started == [] and repeat.repeated == [KEY]
    # A click for something never asked (another campaign, an unknown subject): nothing.
    stray = store.apply_confirmations(campaign, [click("signup:nothing", T0, campaign)])
    assert stray.unknown == [KEY]


def test_a_held_change_waits_for_its_own_click(store: SqlStore, campaign: Campaign) -> None:
    store.upsert_signups(campaign, [signup(T0, n=1)])
    store.apply_confirmations(campaign, [click(f"signup:{1:020d}-file", T0, campaign)])
    report = store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Mallory", red=3, n=2)])
    assert report.held == [KEY] and report.updated == [KEY]
    current = row(store, campaign)
    assert (current["first_name"], current["segment"]) == ("Jane", "CRITICAL")
    subject = str(current["confirm_subject"])
    assert subject == f"change:{2:020d}-file"
    # A second change meanwhile is held, not emailed; the same one again is nothing new.
    store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Eve", red=3, n=3)])
    store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Eve", red=3, n=4)])
    changes = store.profile_changes(campaign)
    assert changes["status"].tolist() == ["pending", "held"]
    assert row(store, campaign)["confirm_subject"] == subject

    done = store.apply_confirmations(campaign, [click(subject, T0 + timedelta(days=2), campaign)])
    assert done.changed == [KEY]
    assert row(store, campaign)["first_name"] == "Mallory"
    assert store.profile_changes(campaign)["status"].tolist() == ["applied", "held"]


def test_forget_erases_consent_records_and_held_changes(
    store: SqlStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup(T0, n=1)])
    store.apply_confirmations(campaign, [click(f"signup:{1:020d}-file", T0, campaign)])
    store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Mallory", n=2)])
    assert len(store.consent_records(campaign)) == 2
    erased = SqlForget(store.url, engine=store.engine).erase(KEY)
    assert erased["consent_records"] == 2 and erased["profile_changes"] == 1
    assert store.consent_records(campaign).empty and store.profile_changes(campaign).empty


def test_the_team_applies_a_held_change_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With opt-in off a change is held; `xmas-pipeline profile-changes` lists it and
    `--apply` uses it, once (after the team checked with the person)."""
    monkeypatch.setenv("XMAS_HOME", str(tmp_path / "home"))
    campaign = load_campaign()
    store = SqlStore(f"sqlite:///{tmp_path / 'home' / 'state.db'}")
    store.upsert_signups(campaign, [signup(T0, n=1)])
    report = store.upsert_signups(campaign, [signup(T0 + timedelta(days=1), "Janet", n=2)])
    assert report.held == [KEY] and report.asked == []
    assert row(store, campaign)["confirm_subject"] == ""  # no email with opt-in off
    change_id = f"{2:020d}-file"

    assert main(["profile-changes"]) == 0
    listed = capsys.readouterr().out
    assert change_id in listed and "held" in listed and "Janet" in listed
    assert main(["profile-changes", "--apply", change_id]) == 0
    assert row(store, campaign)["first_name"] == "Janet"
    assert main(["profile-changes", "--apply", change_id]) == 2  # applied already
    assert main(["profile-changes"]) == 0
    assert "no held changes" in capsys.readouterr().out
