"""The state-store interface: where contacts, sequences and message status live.

Two implementations: `sql_store.SqlStore` (SQLite by default, PostgreSQL by URL) and
`notion_store.NotionStore`. The Dagster assets only ever see this interface.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.reminders import ContactBookingUpdate
from xmas_pipeline.core.signup import SignupEvent


class StoreSchemaError(RuntimeError):
    """The store lacks properties/columns the pipeline needs. Raised before any write."""

    def __init__(self, missing: dict[str, list[str]]) -> None:
        self.missing = missing
        parts = [f"{where}: {', '.join(names)}" for where, names in missing.items()]
        super().__init__(
            "the state store is missing properties the pipeline needs ("
            + "; ".join(parts)
            + "). Run `xmas-pipeline notion setup` to add them."
        )


@dataclass(frozen=True)
class UpsertReport:
    created: list[str] = field(default_factory=list)  # contact keys given a new sequence
    updated: list[str] = field(default_factory=list)  # already had one: profile refreshed
    unchanged: list[str] = field(default_factory=list)  # exact re-delivery
    contact_missing: list[str] = field(default_factory=list)  # no CRM contact (Notion only)


@dataclass(frozen=True)
class BookingUpsertReport:
    new_events: int = 0  # Cal.com changes not seen before
    repeats: int = 0  # re-delivered webhooks, re-polled API versions: no-ops
    bookings: list[str] = field(default_factory=list)  # booking uids whose state changed
    updates: list[ContactBookingUpdate] = field(default_factory=list)  # contacts rewritten
    contact_missing: list[str] = field(default_factory=list)  # no CRM contact (Notion only)


@dataclass(frozen=True)
class SentRecord:
    """A message the provider accepted. Written only after acceptance (firm decision 6)."""

    message_id: str
    idempotency_key: str
    contact_key: str
    kind: str  # "nurture" | "reminder"
    step_id: str  # "email-3", "reminder-2"
    step_number: int
    due_at: datetime
    sent_at: datetime
    provider_id: str
    segment: str = ""
    booking_uid: str = ""
    completes_sequence: bool = False  # the last nurture step: mark the sequence completed
    forced: bool = False  # a forced re-send (fresh idempotency key)


@dataclass(frozen=True)
class OutcomeRecord:
    """A message that did not go out: failed (with the provider's reason) or skipped."""

    message_id: str
    contact_key: str
    kind: str
    step_id: str
    step_number: int
    due_at: datetime
    status: str  # "failed" | "skipped"
    reason: str
    at: datetime
    segment: str = ""
    booking_uid: str = ""


@runtime_checkable
class StateStore(Protocol):
    def prepare(self, campaign: Campaign) -> None:
        """Create (SQL) or verify (Notion) the schema. Raises StoreSchemaError."""

    def upsert_signups(self, campaign: Campaign, events: list[SignupEvent]) -> UpsertReport:
        """Create a sequence per new contact; a re-delivery never restarts a sequence."""

    def load_sequences(self, campaign: Campaign) -> pd.DataFrame:
        """All sequences of the campaign, in `core.state.sequence_columns` shape."""

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        """Mark one message sent (one write per email)."""

    def record_outcome(self, campaign: Campaign, record: OutcomeRecord) -> None:
        """Record a failed or skipped message with its reason."""

    def record_exit(self, campaign: Campaign, contact_key: str, reason: str) -> None:
        """Stop a contact's nurture sequence for good (booked, unsubscribed, bounced...)."""

    def sent_log(self, campaign: Campaign, start_day: str, end_day: str) -> pd.DataFrame:
        """Messages sent whose due day is in [start_day, end_day]: columns message_id,
        contact_key, kind, step_id, step_number, segment, booking_uid, due_at, sent_at,
        provider_id, idempotency_key."""

    # -- bookings, reminders and email events ----------------------------------------------

    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        """Keep each Cal.com change once, fold it into its booking (`core.reminders`), and
        bring each touched contact up to date: Booked + call date + Pre-Call Prep, or Not
        Booked after a cancellation; the sequence's `booked` flag follows."""

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        """Bookings (all, or these uids) in `core.reminders.BOOKING_COLUMNS` shape."""

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        """Every reminder sent, skipped or failed: booking_uid, step_number, status
        ("sent" | "skipped" | "failed"), reason, due_at."""

    def load_contact_flags(self, campaign: Campaign) -> pd.DataFrame:
        """Exit flags of contacts, including those without a sequence: contact_key,
        unsubscribed, paused, delivery_state."""

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        """Set `unsubscribed`, `paused` or `delivery_state` on a contact, with or without a
        sequence. A delivery state only ever gets stronger (complained > bounced)."""

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        """Keep one email event and raise its message's delivery status. False: a repeat."""
