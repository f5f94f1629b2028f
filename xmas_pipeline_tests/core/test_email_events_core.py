"""Resend webhook bodies and the intake's unsubscribes as `DeliveryEvent`s."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from xmas_pipeline.core.email_events import (
    contact_flags,
    parse_email_event,
    stronger_state,
)

NOW = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)


def resend(kind: str, **data: object) -> dict:
    """A Resend webhook body (https://resend.com/docs/webhooks), as the intake stores it."""
    return {
        "type": kind,
        "created_at": "2025-12-01T10:00:05.000Z",
        "data": {
            "broadcast_id": None,
            "created_at": "2025-12-01T09:59:58.000Z",
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "BusOS <hello@example.com>",
            "to": ["Jane@Example.com"],
            "subject": "Your results are in, Jane",
            "tags": {"campaign": "christmas-2025", "step": "email-1", "segment": "URGENT"},
            **data,
        },
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("email.sent", "sent"),
        ("email.delivered", "delivered"),
        ("email.delivery_delayed", "delivery_delayed"),
        ("email.opened", "opened"),
        ("email.complained", "complained"),
        ("email.failed", "failed"),
    ],
)
def test_resend_event_kinds(kind: str, expected: str) -> None:
    event = parse_email_event(json.dumps(resend(kind)), received_at=NOW, ref="x.json")
    assert event is not None
    assert event.kind == expected
    assert event.contact_key == "jane@example.com"
    assert event.provider_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert event.tags == {"campaign": "christmas-2025", "step": "email-1", "segment": "URGENT"}
    assert event.at == datetime(2025, 12, 1, 10, 0, 5, tzinfo=UTC)
    assert event.ref == "x.json"


def test_hard_bounce_sets_the_flag_and_a_transient_one_does_not() -> None:
    hard = parse_email_event(
        resend(
            "email.bounced",
            bounce={"message": "550 5.1.1 no such user", "subType": "General", "type": "Permanent"},
        ),
        received_at=NOW,
    )
    soft = parse_email_event(
        resend("email.bounced", bounce={"message": "mailbox full", "type": "Transient"}),
        received_at=NOW,
    )
    assert hard is not None and hard.kind == "bounced" and "no such user" in hard.detail
    assert contact_flags(hard) == {"delivery_state": "bounced"}
    assert soft is not None and soft.kind == "soft_bounced"
    assert contact_flags(soft) == {}


def test_click_keeps_the_link() -> None:
    event = parse_email_event(
        resend(
            "email.clicked",
            click={"link": "https://cal.com/busos/diagnostic", "timestamp": "2025-12-01T10:00:00Z"},
        ),
        received_at=NOW,
    )
    assert event is not None and event.kind == "clicked"
    assert event.detail == "https://cal.com/busos/diagnostic"
    assert contact_flags(event) == {}


def test_intake_unsubscribe_event() -> None:
    body = {
        "type": "contact.unsubscribed",
        "created_at": "2025-12-01T10:00:00.123456+00:00",
        "data": {"email": "jane@example.com", "source": "one-click"},
    }
    event = parse_email_event(body, received_at=NOW)
    assert event is not None and event.kind == "unsubscribed"
    assert event.provider_id == "" and event.detail == "one-click"
    assert contact_flags(event) == {"unsubscribed": True}


def test_complaint_flag_and_strength() -> None:
    event = parse_email_event(resend("email.complained"), received_at=NOW)
    assert event is not None and contact_flags(event) == {"delivery_state": "complained"}
    assert stronger_state("complained", "bounced") == "complained"
    assert stronger_state("bounced", "complained") == "complained"
    assert stronger_state("", "bounced") == "bounced"


def test_other_types_are_ignored_and_bad_bodies_refused() -> None:
    assert parse_email_event({"type": "domain.updated", "data": {}}, received_at=NOW) is None
    assert parse_email_event({"type": "email.scheduled", "data": {}}, received_at=NOW) is None
    with pytest.raises(ValueError, match="to"):
        parse_email_event(resend("email.delivered", to=[]), received_at=NOW)
    with pytest.raises(ValueError, match="email_id"):
        parse_email_event(resend("email.delivered", email_id="../x y"), received_at=NOW)
    with pytest.raises(ValueError, match="type"):
        parse_email_event({"data": {}}, received_at=NOW)
    with pytest.raises(ValueError, match="JSON"):
        parse_email_event(b"{nope", received_at=NOW)


def test_redelivery_has_the_same_key() -> None:
    body = json.dumps(resend("email.delivered"))
    a = parse_email_event(body, received_at=NOW)
    b = parse_email_event(body, received_at=datetime(2025, 12, 2, tzinfo=UTC))
    assert a is not None and b is not None and a.dedupe_key == b.dedupe_key


def test_named_recipient_and_list_tags() -> None:
    event = parse_email_event(
        resend(
            "email.delivered",
            to=["Jane Doe <jane@example.com>"],
            tags=[{"name": "step", "value": "reminder-2"}],
        ),
        received_at=NOW,
    )
    assert event is not None
    assert event.contact_key == "jane@example.com" and event.tags == {"step": "reminder-2"}
