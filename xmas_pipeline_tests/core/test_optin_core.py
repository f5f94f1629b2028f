"""Double opt-in's pure rules: confirmation tokens, the confirmation plan, the retake rule,
and the confirmation template among the checked ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline.core.confirm_plan import due_confirmations
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.optin import (
    TokenProblem,
    confirmation_event,
    make_confirm_token,
    read_confirmation,
    verify_confirm_token,
)
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.retake import decide_retake
from xmas_pipeline.core.sequence_frame import normalise_sequences
from xmas_pipeline.core.template_check import check_templates, template_bases
from xmas_pipeline.core.unsubscribe import SigningKeys, make_token

NOW = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)
KEYS = SigningKeys((("1", "old-secret"), ("2", "new-secret")))
WEEK = NOW + timedelta(days=7)


def token(subject: str = "signup:abc", expires: datetime = WEEK, keys: SigningKeys = KEYS) -> str:
    return make_confirm_token("Jane@Example.com", "christmas-2025", subject, expires, keys)


def test_a_token_names_the_address_campaign_subject_and_expiry() -> None:
    claim = verify_confirm_token(token(), KEYS, NOW)
    assert (claim.email, claim.campaign, claim.subject) == (
        "jane@example.com",
        "christmas-2025",
        "signup:abc",
    )
    assert claim.kind == "signup" and claim.subject_id == "abc"
    assert claim.expires_at == WEEK


def test_an_expired_token_is_told_apart_from_a_forged_one() -> None:
    with pytest.raises(TokenProblem) as expired:
        verify_confirm_token(token(), KEYS, WEEK)
    assert expired.value.reason == "expired"
    good = token()
    payload, mac, key_id = good.split(".")
    for bad in (
        None,
        "",
        "garbage",
        f"{payload}x.{mac}.{key_id}",  # payload altered
        f"{payload}.{mac[:-1]}A.{key_id}",  # mac altered
        f"{payload}.{mac}.9",  # unknown key
        make_token("jane@example.com", KEYS),  # an unsubscribe token: another purpose
        token(keys=SigningKeys((("2", "someone-else"),))),
    ):
        with pytest.raises(TokenProblem) as problem:
            verify_confirm_token(bad, KEYS, NOW)
        assert problem.value.reason == "invalid", bad


def test_a_rotated_key_keeps_checking_links_already_sent() -> None:
    before = token(keys=SigningKeys((("1", "old-secret"),)))
    assert verify_confirm_token(before, KEYS, NOW).email == "jane@example.com"
    assert token().endswith(".2")  # the newest key signs


def test_ingestion_checks_the_token_again_at_the_files_arrival() -> None:
    claim = verify_confirm_token(token(), KEYS, NOW)
    payload = json.loads(confirmation_event(claim, token(), "203.0.113.9", "UA\x00x", NOW))
    assert payload["data"]["email"] == "jane@example.com"  # forget finds the file
    click = read_confirmation(payload, KEYS, received_at=NOW, source="signups/d/x.json")
    assert (click.ip, click.user_agent, click.contact_key) == ("203.0.113.9", "UAx", claim.email)
    with pytest.raises(ValueError, match="expired"):
        read_confirmation(payload, KEYS, received_at=WEEK, source="s")
    payload["data"]["email"] = "other@example.com"
    with pytest.raises(ValueError, match="address"):
        read_confirmation(payload, KEYS, received_at=NOW, source="s")


def test_retake_of_a_running_sequence_holds_a_new_name_and_applies_the_scores() -> None:
    current = {
        "first_name": "Sam",
        "business_name": "Salon",
        "red_systems": 3,
        "segment": "CRITICAL",
    }
    incoming = {
        "first_name": "Mallory",
        "business_name": "Salon",
        "red_systems": 0,
        "segment": "OPTIMIZE",
    }
    decision = decide_retake(current, incoming, running=True)
    assert decision.apply == {"red_systems": 0, "segment": "OPTIMIZE"}
    assert decision.held == {"first_name": "Mallory"}
    assert decide_retake(current, dict(current), running=True).unchanged
    # Nothing has been written for a sequence awaiting its confirmation: all applies.
    waiting = decide_retake(current, incoming, running=False)
    assert waiting.held == {} and waiting.apply["first_name"] == "Mallory"


def frame(**row: object) -> pd.DataFrame:
    base: dict[str, object] = {
        "contact_key": "jane@example.com",
        "email": "jane@example.com",
        "segment": "URGENT",
        "signup_at": NOW,
        "completed": False,
        "awaiting_confirmation": True,
        "confirm_subject": "signup:abc",
        "confirm_requested_at": NOW,
        "confirm_sent_at": None,
    }
    return normalise_sequences(pd.DataFrame([{**base, **row}]), 7)


def test_one_confirmation_email_and_no_nurture_while_awaiting() -> None:
    campaign = load_campaign().model_copy(update={"double_opt_in": True})
    sequences = frame()
    assert compute_due(sequences, campaign, NOW + timedelta(days=30)).empty
    [row] = due_confirmations(sequences, campaign, NOW).to_dict("records")
    assert row["message_id"] == "christmas-2025/jane@example.com/confirm/signup-abc"
    assert row["kind"] == "confirm" and row["action"] == "send"
    assert row["confirm_expires_at"] == NOW + timedelta(days=7)
    # Emailed already, expired, unsubscribed, or started: none.
    assert due_confirmations(frame(confirm_sent_at=NOW), campaign, NOW).empty
    assert due_confirmations(sequences, campaign, NOW + timedelta(days=7)).empty
    assert due_confirmations(frame(unsubscribed=True), campaign, NOW).empty
    assert due_confirmations(frame(awaiting_confirmation=False), campaign, NOW).empty
    # A held change's confirmation goes to a running sequence.
    change = frame(awaiting_confirmation=False, confirm_subject="change:def")
    assert due_confirmations(change, campaign, NOW)["step_id"].tolist() == ["confirm"]


def test_the_confirmation_template_is_checked_when_opt_in_is_on() -> None:
    campaign = load_campaign().model_copy(update={"double_opt_in": True})
    assert "confirm" in template_bases(campaign)
    assert "confirm" not in template_bases(load_campaign())
    assert check_templates(Renderer(load_template_dir()), campaign, NOW) == []
    assert load_campaign().double_opt_in is False  # the quick start is unchanged
