"""The funnel: counts per segment and step from the sent log, events and sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.funnel import STEP_COLUMNS, compute_funnel, events_from_status
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline.core.sequence_frame import normalise_sequences
from xmas_pipeline.core.signup import Signup, SignupEvent

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


def sequences(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return normalise_sequences(pd.DataFrame(rows), 7)


def person(key: str, segment: str, **flags: Any) -> dict[str, Any]:
    return {"contact_key": key, "email": key, "segment": segment, "signup_at": T0, **flags}


def sent(key: str, step: int, segment: str, hours: int, provider: str, **extra: Any) -> dict:
    return {
        "message_id": f"christmas-2025/{key}/email-{step}",
        "idempotency_key": f"christmas-2025/{key}/email-{step}",
        "contact_key": key,
        "kind": "nurture",
        "step_id": f"email-{step}",
        "step_number": step,
        "segment": segment,
        "booking_uid": "",
        "due_at": T0 + timedelta(hours=hours),
        "sent_at": T0 + timedelta(hours=hours, minutes=1),
        "provider_id": provider,
        "forced": False,
        **extra,
    }


def event(kind: str, provider: str = "", at_hours: float = 0, **extra: Any) -> dict[str, Any]:
    return {
        "provider_id": provider,
        "message_id": extra.pop("message_id", ""),
        "contact_key": extra.pop("contact_key", ""),
        "kind": kind,
        "at": T0 + timedelta(hours=at_hours),
    }


def row(funnel_steps: pd.DataFrame, segment: str, step_id: str) -> dict[str, Any]:
    match = funnel_steps[
        (funnel_steps["segment"] == segment) & (funnel_steps["step_id"] == step_id)
    ]
    assert len(match) == 1
    return match.iloc[0].to_dict()


def test_counts_per_segment_and_step() -> None:
    people = sequences(
        [
            person("a@x.com", "CRITICAL", booked=True),
            person("b@x.com", "CRITICAL"),
            person("c@x.com", "URGENT", unsubscribed=True),
            person("d@x.com", "OPTIMIZE"),
        ]
    )
    log = pd.DataFrame(
        [
            sent("a@x.com", 1, "CRITICAL", 0, "re_a1"),
            sent("a@x.com", 2, "CRITICAL", 24, "re_a2"),
            sent("b@x.com", 1, "CRITICAL", 0, "re_b1"),
            sent("c@x.com", 1, "URGENT", 0, "re_c1"),
            sent("c@x.com", 2, "URGENT", 24, "re_c2"),
        ]
    )
    events = pd.DataFrame(
        [
            event("email.delivered", "re_a1"),
            event("email.delivered", "re_a2"),
            event("email.opened", "re_a2"),
            event("email.opened", "re_a2"),  # opened twice: one open
            event("email.clicked", "re_a2"),
            event("email.delivered", "re_b1"),
            event("email.bounced", "re_c1"),
            event("email.delivered", "re_unknown"),  # another campaign's email: ignored
            # c unsubscribed between email 1 and email 2: email 1 tipped them.
            event("unsubscribed", contact_key="c@x.com", at_hours=5),
        ]
    )
    funnel = compute_funnel(log, events, people)

    assert list(funnel.steps.columns) == STEP_COLUMNS
    # Every segment x every step seen, in step order.
    assert funnel.steps["step_id"].tolist() == ["email-1", "email-2"] * 3
    assert funnel.steps["segment"].tolist()[::2] == ["CRITICAL", "URGENT", "OPTIMIZE"]

    crit1 = row(funnel.steps, "CRITICAL", "email-1")
    assert (crit1["sent"], crit1["delivered"], crit1["opened"], crit1["booked"]) == (2, 2, 0, 0)
    crit2 = row(funnel.steps, "CRITICAL", "email-2")
    assert crit2 == {
        "segment": "CRITICAL",
        "kind": "nurture",
        "step_id": "email-2",
        "step_number": 2,
        "sent": 1,
        "delivered": 1,
        "opened": 1,
        "clicked": 1,
        "bounced": 0,
        "complained": 0,
        "unsubscribed": 0,
        "booked": 1,  # a booked after email 2, their last
    }
    urg1 = row(funnel.steps, "URGENT", "email-1")
    assert (urg1["sent"], urg1["bounced"], urg1["unsubscribed"]) == (1, 1, 1)
    assert row(funnel.steps, "URGENT", "email-2")["unsubscribed"] == 0
    assert row(funnel.steps, "OPTIMIZE", "email-1")["sent"] == 0

    assert funnel.totals() == {
        "sent": 5,
        "delivered": 3,
        "opened": 1,
        "clicked": 1,
        "bounced": 1,
        "complained": 0,
        "unsubscribed": 1,
        "booked": 1,
    }
    assert funnel.rate("delivered") == 0.6
    conversion = funnel.conversion.set_index("segment")
    assert conversion.loc["CRITICAL"].to_dict() == {
        "contacts": 2,
        "emailed": 2,
        "booked": 1,
        "conversion": 0.5,
    }
    assert conversion.loc["URGENT", "conversion"] == 0.0
    assert conversion.loc["OPTIMIZE", "emailed"] == 0
    assert funnel.overall_conversion() == 0.25


def test_a_forced_resend_counts_once_and_its_events_count_for_the_message() -> None:
    people = sequences([person("a@x.com", "URGENT")])
    first = sent("a@x.com", 1, "URGENT", 0, "re_first")
    again = sent("a@x.com", 1, "URGENT", 0, "re_again", forced=True)
    again["idempotency_key"] += "/resend-abc"
    again["sent_at"] += timedelta(days=2)
    events = pd.DataFrame([event("email.opened", "re_again")])
    funnel = compute_funnel(pd.DataFrame([first, again]), events, people)
    urg = row(funnel.steps, "URGENT", "email-1")
    assert (urg["sent"], urg["opened"]) == (1, 1)


def test_unsubscribe_known_only_from_the_flag_goes_to_the_last_email() -> None:
    people = sequences([person("a@x.com", "OPTIMIZE", unsubscribed=True)])
    log = pd.DataFrame(
        [sent("a@x.com", 1, "OPTIMIZE", 0, "p1"), sent("a@x.com", 2, "OPTIMIZE", 24, "p2")]
    )
    funnel = compute_funnel(log, None, people)
    assert row(funnel.steps, "OPTIMIZE", "email-1")["unsubscribed"] == 0
    assert row(funnel.steps, "OPTIMIZE", "email-2")["unsubscribed"] == 1


def test_events_named_by_message_id_and_a_missing_segment_is_the_contacts() -> None:
    people = sequences([person("a@x.com", "CRITICAL")])
    log = pd.DataFrame([sent("a@x.com", 1, "", 0, "")])  # no provider id, no segment
    events = pd.DataFrame(
        [event("delivered", message_id="christmas-2025/a@x.com/email-1", contact_key="A@x.com")]
    )
    funnel = compute_funnel(log, events, people)
    crit = row(funnel.steps, "CRITICAL", "email-1")
    assert (crit["sent"], crit["delivered"]) == (1, 1)


def test_nothing_sent_yet() -> None:
    people = sequences([person("a@x.com", "CRITICAL")])
    empty_log = pd.DataFrame(columns=list(sent("a@x.com", 1, "", 0, "")))
    funnel = compute_funnel(empty_log, None, people)
    assert funnel.steps.empty
    assert funnel.totals()["sent"] == 0 and funnel.rate("opened") == 0.0
    assert funnel.conversion["contacts"].tolist() == [1, 0, 0]


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_on_the_sql_stores_own_frames(store: SqlStore, campaign: Campaign) -> None:
    signup = Signup.model_validate(
        {"email": "z@x.com", "first_name": "Z", "assessment_score": 40, "red_systems": 2}
    )
    store.upsert_signups(campaign, [SignupEvent(signup=signup, received_at=T0, source="t")])
    for step in (1, 2):
        store.record_sent(
            campaign,
            SentRecord(
                message_id=f"christmas-2025/z@x.com/email-{step}",
                idempotency_key=f"christmas-2025/z@x.com/email-{step}",
                contact_key="z@x.com",
                kind="nurture",
                step_id=f"email-{step}",
                step_number=step,
                due_at=T0 + timedelta(days=step - 1),
                sent_at=T0 + timedelta(days=step - 1, minutes=1),
                provider_id=f"re_{step}",
                segment="CRITICAL",
            ),
        )
    store.set_flags(campaign, "z@x.com", booked=True)
    log = store.sent_log(campaign, "2025-11-01", "2099-01-01")
    events = pd.DataFrame([event("email.clicked", "re_1", at_hours=2)])
    funnel = compute_funnel(log, events, store.load_sequences(campaign))
    assert row(funnel.steps, "CRITICAL", "email-1")["clicked"] == 1
    assert row(funnel.steps, "CRITICAL", "email-2")["booked"] == 1
    assert funnel.conversion.set_index("segment").loc["CRITICAL", "conversion"] == 1.0


def test_delivery_statuses_count_as_the_events_they_imply() -> None:
    people = sequences([person(k, "URGENT") for k in ("a@x.com", "b@x.com", "c@x.com", "d@x.com")])
    log = pd.DataFrame(
        [
            sent(k, 1, "URGENT", 0, f"re_{k[0]}")
            for k in ("a@x.com", "b@x.com", "c@x.com", "d@x.com")
        ]
    )
    status = pd.DataFrame(
        [
            {"provider_id": "re_a", "status": "clicked"},
            {"provider_id": "re_b", "status": "delivered"},
            {"provider_id": "re_c", "status": "bounced"},
            {"provider_id": "re_d", "status": "complained"},
        ]
    ).assign(message_id="", contact_key="", status_at=T0)
    urg = row(compute_funnel(log, events_from_status(status), people).steps, "URGENT", "email-1")
    assert (urg["delivered"], urg["opened"], urg["clicked"]) == (3, 1, 1)
    assert (urg["bounced"], urg["complained"]) == (1, 1)
    assert events_from_status(status.iloc[0:0]).empty
