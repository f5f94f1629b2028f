"""The state-store interface: where contacts, sequences and message status live.

Two implementations: `sql_store.SqlStore` (SQLite by default, PostgreSQL by URL) and
`notion_store.NotionStore`. The Dagster assets only ever see this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import pandas as pd

from xmas_pipeline.core.campaign import Campaign
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
