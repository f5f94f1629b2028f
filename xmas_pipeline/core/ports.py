"""The interfaces the services work against, and the records that cross them.

Adapters implement these (the SQL store, the Resend and outbox senders, the Notion sync's
queue); services and the Dagster assets only ever see them. Each protocol is small and
every backend implements all of it, so nobody probes a backend for what it can do:

- `SequenceStore`: contacts' sequences, what was sent, failed or skipped;
- `BookingLedger`: Cal.com bookings, reminder outcomes, contact exit flags, email events;
- `StateStore`: both (what the pipeline is configured with);
- `EmailSender`: hands emails to a provider, at most once per idempotency key;
- `NotionQueue`: the contacts whose Notion pages are behind the store;
- `AlertOutbox`: alerts for the ops chat, kept until the chat accepted them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from xmas_pipeline.core.booking_state import ContactBookingUpdate
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.send_plan import CampaignState
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
    # Double opt-in: new or renewed sequences waiting for their confirmation (also in
    # `created` / `updated`), and contacts whose new name or business was held.
    awaiting: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    # Held changes now pending a confirmation email (double opt-in).
    asked: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BookingUpsertReport:
    new_events: int = 0  # Cal.com changes not seen before
    repeats: int = 0  # re-delivered webhooks, re-polled API versions: no-ops
    bookings: list[str] = field(default_factory=list)  # booking uids whose state changed
    updates: list[ContactBookingUpdate] = field(default_factory=list)  # contacts rewritten


@dataclass(frozen=True)
class SentRecord:
    """A message the provider accepted. Written only after acceptance."""

    message_id: str
    idempotency_key: str
    contact_key: str
    kind: str  # "nurture" | "reminder" | "confirm" (double opt-in)
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
class SequenceStore(Protocol):
    def prepare(self, campaign: Campaign) -> None:
        """Create the schema (and bring an older one up to date)."""

    def upsert_signups(self, campaign: Campaign, events: list[SignupEvent]) -> UpsertReport:
        """Create a sequence per new contact; a re-delivery never restarts a sequence."""

    def load_sequences(self, campaign: Campaign, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The campaign's sequences (all, or these contacts'), in
        `core.sequence_frame.sequence_columns` shape."""

    def last_nurture_elsewhere(
        self, campaign: Campaign, keys: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """The last nurture email each person got from each other campaign
        (`core.due.ELSEWHERE_COLUMNS`), for these contacts or everyone running here."""

    def signups_across_campaigns(self, keys: Iterable[str]) -> pd.DataFrame:
        """Every campaign these people signed up to: contact_key, campaign, signup_at."""

    def sequence_counts(self, campaign: Campaign) -> tuple[int, int]:
        """How many of the campaign's sequences run, and how many are completed."""

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


@runtime_checkable
class BookingLedger(Protocol):
    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        """Keep each Cal.com change once, fold it into its booking (`core.booking_state`),
        and bring each touched contact up to date: Booked + call date + Pre-Call Prep, or
        Not Booked after a cancellation; the sequence's `booked` flag follows."""

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        """Bookings (all, or these uids) in `core.booking_state.BOOKING_COLUMNS` shape."""

    def booking_campaigns(self, uids: Iterable[str]) -> dict[str, str]:
        """The campaign each of these booking uids is already kept under (known ones only)."""

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        """Every reminder sent, skipped or failed: booking_uid, step_number, status
        ("sent" | "skipped" | "failed"), reason, due_at."""

    def load_contact_flags(
        self, campaign: Campaign, keys: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Exit flags kept on contact rows, including contacts without a sequence (all, or
        these): contact_key, unsubscribed, paused, delivery_state, booked; with what every
        campaign recorded for the same people merged in (`core.suppression`)."""

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        """Set `unsubscribed`, `paused` or `delivery_state` on a contact, with or without a
        sequence. A delivery state only ever gets stronger (complained > bounced)."""

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        """Keep one email event and raise its message's delivery status. False: a repeat."""

    def delivery_status(self, campaign: Campaign) -> pd.DataFrame:
        """Each sent message's delivery status: provider_id, message_id, contact_key,
        status, status_at."""


@runtime_checkable
class StateStore(SequenceStore, BookingLedger, Protocol):
    """Everything the pipeline keeps: what a configured backend provides."""

    def load_due_states(
        self,
        campaigns: Sequence[Campaign],
        now: datetime,
        horizon: timedelta = timedelta(0),
        running: Mapping[str, Campaign] | None = None,
    ) -> dict[str, CampaignState]:
        """What each campaign's plan at `now` (or its forecast `horizon` ahead) is made
        from: only the sequences that may have something due by then, the people with an
        active booking, their flags, bookings and reminder log; read together. With
        `running` (every running campaign by slug), each person's last nurture email of
        the other campaigns too, for the gap across campaigns."""


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # `<campaign>/<contact key>/<step>[/<booking uid>]`
    idempotency_key: str  # the message id, or a fresh key for a forced re-send
    to: str
    from_email: str
    subject: str  # single line: checked before it gets here
    html: str
    text: str
    tags: dict[str, str] = field(default_factory=dict)  # campaign, step, segment
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, ...
    reply_to: str = ""  # where replies go, when not the sender (XMAS_REPLY_TO)


@dataclass(frozen=True)
class SendResult:
    message_id: str
    idempotency_key: str
    status: str  # "sent" | "failed" (permanent, e.g. bad address) | "retry" (try next run)
    provider_id: str = ""
    error: str = ""
    # A "retry" the provider may nonetheless have taken (a timeout, a 5xx, a lost answer):
    # its batch must go again exactly as it was. False: it was definitely not accepted (a
    # 429, a quota): the message is planned again under the rules.
    fate_unknown: bool = False


class SenderQuotaExceeded(RuntimeError):
    """The provider's daily/monthly quota is used up: stop the run cleanly.

    `results` holds what was settled before the quota hit, so their status is still
    written back.
    """

    def __init__(self, message: str, results: list[SendResult]) -> None:
        super().__init__(message)
        self.results = results


@runtime_checkable
class EmailSender(Protocol):
    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        """Send each email at most once per idempotency key; one result per email, in order."""


# -- the send journal and the alert outbox ---------------------------------------------------

# One batch as the send path hands it over: each plan row with the email built from it.
Chunk = list[tuple[dict[str, Any], OutgoingEmail]]

IN_FLIGHT_ELSEWHERE = "in flight in another send run"
ALREADY_SENT = "already sent by another send run"


@dataclass(frozen=True)
class JournalEntry:
    """A batch recorded before it went to the sender, not yet settled."""

    entry_id: str
    chunk: Chunk
    created_at: datetime
    holder: str = ""  # the run that wrote it


@dataclass(frozen=True)
class Claim:
    """What `SendJournal.begin` made of a batch: the entry holding the messages this run
    now owns (None when it owns none), and the messages left out, with why."""

    entry: JournalEntry | None
    left_out: list[tuple[dict[str, Any], OutgoingEmail, str]] = field(default_factory=list)


@runtime_checkable
class SendJournal(Protocol):
    """A write-ahead record of each batch handed to the sender, shared by every run.

    `begin` claims each message of a batch (its idempotency key) and records the batch in
    one step: a message claimed by another run's open batch, or already sent, is left out,
    so two send runs that overlap never send one message in two different batches.
    `finish` settles a batch (statuses written) and frees its claims. A batch still open
    whose holder has ended is what a crash left behind: a later run `adopt`s it (only one
    run can) and sends it again exactly as it was, so the provider recognises its
    idempotency keys. A batch whose holder is still running is that run's to settle.
    """

    holder: str

    def begin(self, campaign: Campaign, chunk: Chunk) -> Claim: ...

    def finish(self, entry: JournalEntry) -> None: ...

    def pending(self, campaign: Campaign) -> list[JournalEntry]: ...

    def adopt(self, entry: JournalEntry) -> JournalEntry | None: ...


@dataclass(frozen=True)
class Alert:
    """One message for the ops chat, kept in the alert outbox until the chat accepted it.

    `key` makes it one alert however often it is enqueued (`run-failed:<run id>`,
    `critical:<contact>`...). An "ops" alert is a title and lines of text (scrubbed of
    secrets before they get here); a "critical" alert carries the signup's values in
    `facts`, shaped for the chat only when it is posted."""

    key: str
    kind: str  # "ops" | "critical"
    title: str
    lines: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # failed posts so far
    created_at: datetime | None = None
    last_error: str = ""


@runtime_checkable
class AlertOutbox(Protocol):
    """Alerts written when their event happens and posted until the chat accepts them.

    `enqueue` adds alerts whose key is new (an alert an older release marked sent counts as
    delivered) and notes `noted` keys, in one transaction; `known` says which keys were
    enqueued or noted. `take` leases due alerts (undelivered, their next try come) for
    `lease`, so two deliverers never post the same one; the taker then marks each
    `delivered` (only once the chat accepted it) or `retry_later` with the error."""

    def enqueue(self, alerts: Iterable[Alert], noted: Iterable[str] = ()) -> list[str]: ...

    def known(self, keys: Iterable[str]) -> set[str]: ...

    def take(
        self,
        now: datetime,
        lease: timedelta,
        limit: int = 20,
        keys: Iterable[str] | None = None,
    ) -> list[Alert]: ...

    def delivered(self, alert: Alert) -> None: ...

    def retry_later(self, alert: Alert, error: str, delay: timedelta) -> None: ...

    def waiting(self) -> int: ...


# -- the pause switch and the checked templates ----------------------------------------------


@dataclass(frozen=True)
class SwitchState:
    """Whether a campaign's sending is paused, and why."""

    paused: bool = False
    reason: str = ""
    by: str = ""  # who changed it last: a run id, "reputation guard", ...
    since: datetime | None = None

    def describe(self) -> str:
        if not self.paused:
            return "sending"
        when = f" since {self.since:%Y-%m-%d %H:%M} UTC" if self.since else ""
        who = f" by {self.by}" if self.by else ""
        return f"paused{when}{who}: {self.reason or 'no reason given'}"


@runtime_checkable
class SendSwitch(Protocol):
    """The one pause switch of a campaign, read by every send path before each batch."""

    def state(self, campaign: Campaign) -> SwitchState: ...

    def set(self, campaign: Campaign, *, paused: bool, reason: str, by: str) -> SwitchState: ...


@dataclass(frozen=True)
class TemplateSnapshot:
    """The templates a blocking check rendered, and what it found."""

    sources: dict[str, Any]  # name -> TemplateSource fields
    problems: list[str]
    created_at: datetime


@runtime_checkable
class TemplateSnapshots(Protocol):
    def save(self, campaign: Campaign, run_id: str, snapshot: TemplateSnapshot) -> None: ...

    def load(self, run_id: str) -> TemplateSnapshot | None: ...


# -- the Notion sync ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """A contact whose Notion pages are behind the store, as taken by a sync."""

    contact_key: str
    version: int  # bumped by every change; settled only if unchanged since it was read
    queued_at: datetime  # the oldest change not yet in Notion
    attempts: int = 0


@dataclass(frozen=True)
class QueueStats:
    depth: int = 0  # contacts waiting
    ready: int = 0  # of which free to take now (not held, not waiting to retry)
    oldest_queued_at: datetime | None = None
    failing: int = 0  # with an error from their last attempt
    errors: list[tuple[str, int, str]] = field(default_factory=list)  # key, attempts, error


@dataclass(frozen=True)
class ContactSnapshot:
    """Everything Notion shows about one contact, as the store has it now."""

    contact_key: str
    email: str
    sequence: dict[str, Any] | None  # the sequences row (None: a booker who never signed up)
    nurture_sent: dict[int, datetime] = field(default_factory=dict)  # step -> first sent
    reminders_sent: dict[int, datetime] = field(default_factory=dict)  # current booking's
    booking_uid: str = ""  # the current booking ("" when none, or cancelled)
    meeting_time: datetime | None = None
    booking_status: str = ""  # Booked / Not Booked / "" (never booked)
    campaign_status: str = ""  # what the pipeline set (Nurture Sequence, Pre-Call Prep)
    unsubscribed: bool = False
    paused: bool = False
    delivery_state: str = ""
    last_error: str = ""  # the latest failure still current ("" once a later send went)


@runtime_checkable
class NotionQueue(Protocol):
    """Contacts whose Notion pages are behind the store (`adapters.sql.notion_queue`)."""

    def take(self, campaign: Campaign, holder: str, limit: int = 100) -> list[QueueEntry]: ...

    def settle(
        self, campaign: Campaign, entries: Iterable[QueueEntry], read_at: datetime
    ) -> int: ...

    def retry_later(
        self, campaign: Campaign, entry: QueueEntry, error: str, delay: timedelta
    ) -> None: ...

    def give_back(self, campaign: Campaign, entries: Iterable[QueueEntry]) -> None: ...

    def stats(self, campaign: Campaign) -> QueueStats: ...


@dataclass(frozen=True)
class SequencePageRecord:
    page_id: str  # "" while a create is under way
    written: dict[str, Any]  # property -> value as last written or read (dates as ISO text)
    create_started: bool = False  # a create was tried: look before creating again


@dataclass(frozen=True)
class ContactPageRecord:
    page_id: str  # "": the CRM has no contact with this address
    values: dict[str, Any]  # property -> value as last seen


@dataclass(frozen=True)
class NotionTemplate:
    name: str
    page_id: str
    subject: str
    html: str
    edited_at: datetime
    # The page's Campaign select: the campaign the template is for ("" when none: the
    # default campaign's only).
    campaign: str = ""

    @property
    def key(self) -> str:
        """One row per (campaign, name); a select option never holds a comma."""
        return f"{self.campaign},{self.name}" if self.campaign else self.name
