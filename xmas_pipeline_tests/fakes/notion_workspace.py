"""The BusOS Notion workspace (its databases as the team has them) on the fake server,
plus sync helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.core.signup import Signup, SignupEvent

from .notion_api import FakeNotion

SEGMENTS = {"select": {"options": [{"name": "CRITICAL"}, {"name": "URGENT"}, {"name": "OPTIMIZE"}]}}


def sequence_properties(steps: int = 7, with_setup: bool = True, reminders: int = 3) -> dict:
    """The Email Sequence DB as the team has it (+ what `notion setup` adds)."""
    props: dict[str, Any] = {
        "Name": {"title": {}},
        "Email": "email",
        "First Name": "rich_text",
        "Business Name": "rich_text",
        "Assessment Score": "number",
        "Red Systems": "number",
        "Orange Systems": "number",
        "Yellow Systems": "number",
        "Green Systems": "number",
        "Segment": SEGMENTS,
        "Campaign": {
            "select": {"options": [{"name": "Christmas 2025"}, {"name": "BusinessX Canada"}]}
        },
        "Signup Date": "date",
        **{f"Email {n} Sent": "date" for n in range(1, steps + 1)},
        "Sequence Completed": "checkbox",
        "Assessment Completed": "checkbox",
    }
    if with_setup:
        props.update(
            {
                "GPS Score": "number",
                "Money Score": "number",
                "Revenue Leak Total": "number",
                "Weakest System 1": "rich_text",
                "Weakest System 2": "rich_text",
                "Meeting Time": "date",
                "Booking UID": "rich_text",
                **{f"Reminder {n} Sent": "date" for n in range(1, reminders + 1)},
                "Unsubscribed": "checkbox",
                "Paused": "checkbox",
                "Exit Reason": "rich_text",
                "Last Error": "rich_text",
                "Delivery Status": {
                    "select": {"options": [{"name": "bounced"}, {"name": "complained"}]}
                },
            }
        )
    return props


STATUSES = {"select": {"options": [{"name": "Nurture Sequence"}, {"name": "Pre-Call Prep"}]}}

CONTACT_PROPERTIES: dict[str, Any] = {
    "Name": {"title": {}},
    "email": "email",
    "Assessment Score": "number",
    "Segment": SEGMENTS,
    "Christmas Campaign Status": {
        "select": {"options": [{"name": "Nurture Sequence"}, {"name": "Pre-Call Prep"}]}
    },
    "Booking Status": {
        "select": {
            "options": [
                {"name": "Not Booked"},
                {"name": "Booked"},
                {"name": "Completed"},
                {"name": "No-Show"},
            ]
        }
    },
    "Diagnostic Call Date": "date",
}

TEMPLATE_PROPERTIES: dict[str, Any] = {
    "Template Name": {"title": {}},
    "Subject Line": "rich_text",
    "Email Body HTML": "rich_text",
}

ANALYTICS_PROPERTIES: dict[str, Any] = {
    "Message ID": {"title": {}},
    "Email": "email",
    "Campaign": "select",
    "Step": "rich_text",
    "Status": "select",
    "Resend ID": "rich_text",
    "Error": "rich_text",
    "Segment": "select",
    "Due At": "date",
    "At": "date",
    "Idempotency Key": "rich_text",
}


@dataclass
class Workspace:
    fake: FakeNotion
    contacts: str
    sequences: str
    analytics: str | None = None
    templates: str | None = None

    def client(self, **options: Any) -> NotionSync:
        """The sync's Notion client on this workspace; tests pace nothing and never
        really sleep (unless told otherwise)."""
        options.setdefault("rate_per_s", float("inf"))
        options.setdefault("timeout_s", 5.0)
        if "sleep" not in options:
            clock = VirtualClock()
            options["sleep"], options["clock"] = clock.sleep, clock.now
        return NotionSync(
            token=self.fake.token,
            contacts_db_id=self.contacts,
            sequences_db_id=self.sequences,
            base_url=self.fake.base_url,
            analytics_db_id=options.pop("analytics_db_id", None),
            **options,
        )


def contact_properties(with_setup: bool = True) -> dict[str, Any]:
    """The CRM as the team has it (+ the shipped Christmas 2026 campaign's own status
    property, which `notion setup` adds)."""
    if not with_setup:
        return dict(CONTACT_PROPERTIES)
    return {**CONTACT_PROPERTIES, "Christmas 2026 Campaign Status": STATUSES}


def busos_workspace(
    fake: FakeNotion,
    *,
    with_setup: bool = True,
    analytics: bool = False,
    templates: bool = False,
) -> Workspace:
    return Workspace(
        fake=fake,
        contacts=fake.add_database("BusinessX Canada", contact_properties(with_setup)),
        sequences=fake.add_database("Email Sequence", sequence_properties(with_setup=with_setup)),
        analytics=fake.add_database("Email Analytics", ANALYTICS_PROPERTIES) if analytics else None,
        templates=fake.add_database("Email Templates", TEMPLATE_PROPERTIES) if templates else None,
    )


class VirtualClock:
    """A monotonic clock that only moves when something sleeps; records every sleep."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


BASE_TIME = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)


def signup_event(
    n: int, *, email: str | None = None, at: datetime | None = None, **fields: Any
) -> SignupEvent:
    data: dict[str, Any] = {
        "email": email or f"person{n}@example.com",
        "first_name": f"Person{n}",
        "business_name": f"Business {n}",
        "assessment_score": 40 + n % 50,
        "red_systems": n % 3,
        "orange_systems": (n // 3) % 3,
        "yellow_systems": 1,
        "green_systems": 2,
        "gps_score": 55,
        "money_score": 35,
        "weakest_system_1": "Bookings",
        "weakest_system_2": "Follow-up",
        "revenue_leak_total": 4200 + n,
    }
    data.update(fields)
    return SignupEvent(
        signup=Signup.model_validate(data),
        received_at=at or BASE_TIME + timedelta(minutes=n),
        source=f"inbox/signups/2025-11-03/{n}.json",
    )


def add_contact(fake: FakeNotion, workspace: Workspace, email: str, **values: Any) -> str:
    return fake.add_row(workspace.contacts, {"Name": email.split("@")[0], "email": email, **values})


def requests_during(fake: FakeNotion, action: Callable[[], Any]) -> int:
    before = fake.total
    action()
    return fake.total - before
