"""The rules that span campaigns, as pure rules: one suppression list
(`core.suppression`), the gap between nurture emails across campaigns (`core.due`,
`core.send_gate`), and which campaign a booking belongs to (`core.booking_campaign`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from xmas_pipeline.core.booking_campaign import (
    CAMPAIGN_PARAMETER,
    assign_campaigns,
    booking_campaign,
    campaign_booking_url,
)
from xmas_pipeline.core.bookings import BookingEvent, parse_api_booking, parse_webhook
from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR, Campaign
from xmas_pipeline.core.campaign_folders import load_campaign_folder
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.exit_rules import EXIT, SKIP
from xmas_pipeline.core.flags import merge_contact_flags
from xmas_pipeline.core.send_gate import MIN_GAP, gate_rows
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column
from xmas_pipeline.core.suppression import FLAG_COLUMNS, fold_records, merge_across_campaigns
from xmas_pipeline_tests.support.calcom_payloads import (
    api_booking,
    webhook_cancelled,
    webhook_created,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
A, B = "christmas-2025", "christmas-2026"


@pytest.fixture
def campaign_a() -> Campaign:
    return load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / A, testing_mode=True)


@pytest.fixture
def campaign_b() -> Campaign:
    return load_campaign_folder(SHIPPED_CAMPAIGNS_DIR / B, testing_mode=True)


def flags(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows)).reindex(columns=FLAG_COLUMNS)


def records(*rows: dict) -> pd.DataFrame:
    base = {"unsubscribed": False, "delivery_state": "", "booked": False}
    return pd.DataFrame([{**base, **row} for row in rows])


# -- one suppression list -------------------------------------------------------------------


def test_a_flag_from_any_campaign_holds_here() -> None:
    own = flags(
        {"contact_key": "a@x.com", "unsubscribed": False, "paused": True},
        {"contact_key": "b@x.com", "unsubscribed": False, "paused": False},
    )
    found = records(
        {"campaign": A, "contact_key": "a@x.com", "unsubscribed": True},
        {"campaign": A, "contact_key": "b@x.com", "delivery_state": "bounced"},
        {"campaign": B, "contact_key": "b@x.com", "delivery_state": "complained"},
        # Someone this campaign has no contact row for (only a sequence here).
        {"campaign": A, "contact_key": "c@x.com", "booked": True},
    )
    merged = merge_across_campaigns(own, found).set_index("contact_key")
    assert bool(merged.loc["a@x.com", "unsubscribed"]) is True
    assert bool(merged.loc["a@x.com", "paused"]) is True  # a pause stays this campaign's
    assert merged.loc["b@x.com", "delivery_state"] == "complained"  # the strongest anywhere
    assert bool(merged.loc["c@x.com", "booked"]) is True
    assert bool(merged.loc["c@x.com", "paused"]) is False


def test_no_record_changes_nothing() -> None:
    own = flags({"contact_key": "a@x.com", "unsubscribed": False, "paused": False})
    merged = merge_across_campaigns(own, records().reindex(columns=["campaign", "contact_key"]))
    assert merged.to_dict("records") == [
        {
            "contact_key": "a@x.com",
            "unsubscribed": False,
            "paused": False,
            "delivery_state": "",
            "booked": False,
        }
    ]


def test_a_bounce_never_weakens_a_complaint() -> None:
    folded = fold_records(
        records(
            {"campaign": A, "contact_key": "a@x.com", "delivery_state": "complained"},
            {"campaign": B, "contact_key": "a@x.com", "delivery_state": "bounced"},
        )
    )
    assert folded.loc[0, "delivery_state"] == "complained"


# -- the gap between nurture emails, across campaigns ----------------------------------------


def sequences(campaign: Campaign, **sent: datetime) -> pd.DataFrame:
    """Jane, signed up to `campaign` 30 minutes ago, with these steps sent (email_1=...)."""
    row = {
        "contact_key": "jane@x.com",
        "email": "jane@x.com",
        "first_name": "Jane",
        "segment": "URGENT",
        "completed": False,
        "signup_at": NOW - 30 * MINUTE,
    }
    for name, at in sent.items():
        row[sent_column(int(name.split("_")[1]))] = at
    return normalise_sequences(pd.DataFrame([row]), len(campaign.steps))


def last_sent(slug: str, at: datetime) -> pd.DataFrame:
    return pd.DataFrame([{"contact_key": "jane@x.com", "campaign": slug, "sent_at": at}])


def test_another_campaigns_nurture_email_holds_this_ones_for_the_gap(
    campaign_a: Campaign, campaign_b: Campaign
) -> None:
    b = campaign_b.model_copy(update={"min_gap": 10 * MINUTE})
    # Email 2 is due (testing: a minute after signup), past B's own gap since email 1.
    seqs = sequences(b, email_1=NOW - 20 * MINUTE)
    gaps = {A: campaign_a.min_gap, B: b.min_gap}
    assert compute_due(seqs, b, NOW)["step_id"].tolist() == ["email-2"]

    elsewhere = last_sent(A, NOW - MINUTE)
    assert compute_due(seqs, b, NOW, elsewhere=elsewhere, gaps=gaps).empty
    later = compute_due(seqs, b, NOW + 9 * MINUTE, elsewhere=elsewhere, gaps=gaps)
    assert later["step_id"].tolist() == ["email-2"]


def test_the_longer_of_the_two_gaps_applies(campaign_a: Campaign, campaign_b: Campaign) -> None:
    # B's own gap is nothing (the testing preset's); A's is 10 minutes.
    a = campaign_a.model_copy(update={"min_gap": 10 * MINUTE})
    seqs = sequences(campaign_b, email_1=NOW - 9 * MINUTE)
    gaps = {A: a.min_gap, B: campaign_b.min_gap}
    elsewhere = last_sent(A, NOW - 5 * MINUTE)
    assert compute_due(seqs, campaign_b, NOW, elsewhere=elsewhere, gaps=gaps).empty
    after = compute_due(seqs, campaign_b, NOW + 5 * MINUTE, elsewhere=elsewhere, gaps=gaps)
    assert after["step_id"].tolist() == ["email-2"]
    # A campaign not among the gaps (not running) counts with this one's gap: none here.
    other = last_sent("easter-2027", NOW - MINUTE)
    assert not compute_due(seqs, campaign_b, NOW, elsewhere=other, gaps=gaps).empty


def test_the_welcome_still_goes_at_once(campaign_a: Campaign, campaign_b: Campaign) -> None:
    b = campaign_b.model_copy(update={"min_gap": 10 * MINUTE})
    seqs = sequences(b)
    due = compute_due(
        seqs, b, NOW, elsewhere=last_sent(A, NOW - MINUTE), gaps={A: campaign_a.min_gap}
    )
    assert due[["step_id", "action"]].values.tolist() == [["email-1", "send"]]


def test_the_gate_holds_a_nurture_email_another_campaign_just_sent(
    campaign_a: Campaign, campaign_b: Campaign
) -> None:
    b = campaign_b.model_copy(update={"min_gap": 10 * MINUTE})
    rows = [
        {"message_id": f"{B}/jane@x.com/email-{n}", "contact_key": "jane@x.com"}
        | {"kind": "nurture", "step_number": n}
        for n in (1, 2)
    ]
    contacts = flags({"contact_key": "jane@x.com", "unsubscribed": False, "paused": False})
    elsewhere = last_sent(A, NOW - MINUTE)
    gaps = {A: campaign_a.min_gap, B: b.min_gap}
    stopped = gate_rows(rows, contacts, {}, b, NOW, elsewhere=elsewhere, gaps=gaps)
    assert stopped == {f"{B}/jane@x.com/email-2": (SKIP, MIN_GAP)}
    assert gate_rows(rows, contacts, {}, b, NOW + 10 * MINUTE, elsewhere=elsewhere, gaps=gaps) == {}
    # What the gate always did still comes first: an unsubscribe is final.
    gone = flags({"contact_key": "jane@x.com", "unsubscribed": True, "paused": False})
    stopped = gate_rows(rows, gone, {}, b, NOW, elsewhere=elsewhere, gaps=gaps)
    assert set(stopped.values()) == {(EXIT, "unsubscribed")}


def test_a_booking_elsewhere_stops_the_nurture_only_where_the_file_says_so(
    campaign_b: Campaign,
) -> None:
    seqs = sequences(campaign_b, email_1=NOW - 9 * MINUTE)
    booked_in_a = flags(
        {"contact_key": "jane@x.com", "unsubscribed": False, "paused": False, "booked": False}
    )
    booked_in_a = merge_across_campaigns(
        booked_in_a, records({"campaign": A, "contact_key": "jane@x.com", "booked": True})
    )
    merged, _ = merge_contact_flags(seqs, booked_in_a)
    due = compute_due(merged, campaign_b, NOW)
    assert due[["step_id", "action", "reason"]].values.tolist() == [["email-2", EXIT, "booked"]]
    keeps_going = campaign_b.model_copy(
        update={"exit": campaign_b.exit.model_copy(update={"stop_nurture_on_booking": False})}
    )
    due = compute_due(merged, keeps_going, NOW)
    assert due[["step_id", "action"]].values.tolist() == [["email-2", "send"]]


# -- which campaign a booking belongs to ---------------------------------------------------------


def event(
    uid: str = "bk1", *, campaign: str = "", contact: str = "jane@x.com", **kw
) -> BookingEvent:
    return BookingEvent(
        uid=uid,
        kind=kw.pop("kind", "created"),
        contact_key=contact,
        email=contact,
        start=NOW + timedelta(days=3),
        event_at=kw.pop("event_at", NOW),
        campaign=campaign,
        **kw,
    )


RUNNING = {A, B}
SIGNUPS = {A: NOW - timedelta(days=30), B: NOW - timedelta(days=2)}


def test_the_link_names_the_campaign() -> None:
    chosen = booking_campaign(
        event(campaign=A), known={}, signups=SIGNUPS, campaigns=RUNNING, default=B
    )
    assert chosen == A


def test_else_the_latest_signup() -> None:
    chosen = booking_campaign(event(), known={}, signups=SIGNUPS, campaigns=RUNNING, default=A)
    assert chosen == B
    # A link naming a campaign that is not running is passed over, like no link.
    chosen = booking_campaign(
        event(campaign="easter-2020"), known={}, signups=SIGNUPS, campaigns=RUNNING, default=A
    )
    assert chosen == B
    # A signup to a campaign that is not running counts for nothing.
    only_old = {"easter-2020": NOW}
    chosen = booking_campaign(event(), known={}, signups=only_old, campaigns=RUNNING, default=A)
    assert chosen == A


def test_else_the_default() -> None:
    assert booking_campaign(event(), known={}, signups={}, campaigns=RUNNING, default=A) == A


def test_a_change_follows_the_booking_it_changes() -> None:
    cancel = event("bk1", kind="cancelled", campaign=B)
    assert booking_campaign(cancel, known={"bk1": A}, signups={}, campaigns=RUNNING, default=B) == A
    moved = event("bk2", kind="rescheduled", previous_uid="bk1")
    assert (
        booking_campaign(moved, known={"bk1": A}, signups=SIGNUPS, campaigns=RUNNING, default=B)
        == A
    )


def test_a_batch_keeps_a_booking_and_its_cancellation_together() -> None:
    created = event("bk1", campaign=A, event_at=NOW)
    # A bare cancellation: no attendee, no metadata.
    cancelled = event("bk1", kind="cancelled", contact="", event_at=NOW + MINUTE)
    other = event("bk9", contact="bob@x.com", event_at=NOW)
    by_campaign = assign_campaigns(
        [cancelled, other, created],
        known={},
        signups={"bob@x.com": {B: NOW}},
        campaigns=RUNNING,
        default=B,
    )
    assert by_campaign == {A: [cancelled, created], B: [other]}


def test_the_default_must_be_running() -> None:
    with pytest.raises(ValueError, match="default campaign 'easter-2020'"):
        assign_campaigns([event()], known={}, signups={}, campaigns=RUNNING, default="easter-2020")


def test_cal_com_hands_back_the_links_campaign() -> None:
    body = webhook_created("bk1", NOW + timedelta(days=3), at=NOW)
    body["payload"]["metadata"]["campaign"] = "Christmas-2026 "
    parsed = parse_webhook(body, received_at=NOW)
    assert parsed is not None and parsed.campaign == B
    # The dedupe key is the same with or without it: a re-delivery stays a repeat.
    plain = parse_webhook(webhook_created("bk1", NOW + timedelta(days=3), at=NOW), received_at=NOW)
    assert plain is not None and plain.campaign == "" and plain.dedupe_key == parsed.dedupe_key

    item = api_booking("bk2", NOW + timedelta(days=3), created=NOW)
    item["metadata"] = {"utm_campaign": A}
    polled = parse_api_booking(item)
    assert polled is not None and polled.campaign == A

    odd = webhook_cancelled("bk1", NOW + timedelta(days=3), at=NOW)
    odd["payload"]["metadata"] = {"campaign": "<script>"}
    cancelled = parse_webhook(odd, received_at=NOW)
    assert cancelled is not None and cancelled.campaign == ""  # kept, no campaign named


def test_our_booking_links_name_the_campaign(campaign_b: Campaign) -> None:
    url = campaign_booking_url(campaign_b)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == campaign_b.booking_url
    assert parse_qs(parts.query) == {CAMPAIGN_PARAMETER: [B]}
    assert nurture_context({"first_name": "Jane"}, campaign_b)["booking_url"] == url
    tagged = campaign_b.model_copy(update={"booking_url": "https://cal.com/x?ref=mail"})
    assert parse_qs(urlsplit(campaign_booking_url(tagged)).query) == {
        "ref": ["mail"],
        CAMPAIGN_PARAMETER: [B],
    }
