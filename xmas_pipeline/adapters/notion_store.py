"""The Notion state store: the Email Sequence DB holds one page per contact and campaign,
the contacts DB (BusinessX Canada CRM) gets the score, segment and campaign status.

Request budget (the reason for the caches below):
- `prepare`: 2 requests per database (database -> data source id, then its schema), once
  per store object;
- `load_sequences`: one paginated query, 100 pages a request; it also remembers each
  contact's page id, so `record_sent` is exactly one `pages.update`;
- `upsert_signups`: one query per 100 signups to find existing sequences (none when they
  are already loaded), one per 100 signups to find their contacts, then per new signup at
  most one contact update and one page create;
- the optional analytics DB adds one `pages.create` per logged message.
Writes are paced and retried by `notion_http.NotionApi`; a write that fails for good raises,
so the caller leaves the message due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from xmas_pipeline.adapters.notion_http import (
    DataSource,
    NotionApi,
    NotionCallError,
    fetch_data_source,
)
from xmas_pipeline.adapters.notion_props import encode, iso_datetime, page_values, parse_datetime
from xmas_pipeline.adapters.notion_schema import (
    NotionSchema,
    PropSpec,
    analytics_specs,
    check_properties,
    contact_specs,
    sequence_specs,
    template_specs,
)
from xmas_pipeline.adapters.sql_store import SqlStore
from xmas_pipeline.adapters.store import (
    BookingUpsertReport,
    OutcomeRecord,
    SentRecord,
    StoreSchemaError,
    UpsertReport,
)
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign, load_campaign, message_id
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.segments import classify
from xmas_pipeline.core.signup import Signup, SignupEvent, contact_key
from xmas_pipeline.core.state import normalise_sequences, sent_column, sequence_columns

log = logging.getLogger("xmas_pipeline.notion")

SEQUENCES = "Email Sequence DB"
CONTACTS = "Contacts DB"
ANALYTICS = "Email Analytics DB"
TEMPLATES = "Templates DB"

# Conditions in one `or` filter. Notion documents no count limit, only two levels of nesting;
# 100 keeps each query small and matches its other array limits.
FILTER_CHUNK = 100

SENT_LOG_COLUMNS = [
    "message_id",
    "contact_key",
    "kind",
    "step_id",
    "step_number",
    "segment",
    "booking_uid",
    "due_at",
    "sent_at",
    "provider_id",
    "idempotency_key",
]

T = TypeVar("T")


class NotionStoreError(RuntimeError):
    """A store operation that could not be completed (details in the message)."""


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Row:
    """One Email Sequence page as last read or written by this store."""

    page_id: str
    contact_key: str
    values: dict[str, Any]  # property name -> decoded value
    created_time: str = ""


@dataclass
class _Contact:
    page_id: str
    values: dict[str, Any]


@dataclass
class SetupReport:
    """What `setup_notion` changed: properties added per database, and type conflicts."""

    added: dict[str, list[str]] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.added.values())

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        lines: list[str] = []
        for role in self.checked:
            added = self.added.get(role) or []
            lines.append(f"{role}: " + (f"added {', '.join(added)}" if added else "complete"))
            for conflict in self.conflicts.get(role) or []:
                lines.append(f"{role}: cannot fix {conflict}; change its type in Notion")
        return "\n".join(lines)


class NotionStore:
    """`StateStore` on Notion (notion-client, Notion-Version 2025-09-03)."""

    def __init__(
        self,
        token: str,
        contacts_db_id: str,
        sequences_db_id: str,
        base_url: str = "https://api.notion.com",
        schema: NotionSchema | None = None,
        analytics_db_id: str | None = None,
        rate_per_s: float = 3.0,
        max_attempts: int = 6,
        timeout_s: float = 30,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        ledger: SqlStore | None = None,
    ) -> None:
        self.schema = schema or NotionSchema()
        # Bookings, reminder outcomes and email events live in this SQL store; Notion gets
        # what people read (see `notion_bookings`).
        self.ledger = ledger
        self.api = NotionApi(
            token,
            base_url,
            rate_per_s=rate_per_s,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            sleep=sleep,
            clock=clock,
        )
        self.database_ids: dict[str, str] = {SEQUENCES: sequences_db_id, CONTACTS: contacts_db_id}
        if analytics_db_id:
            self.database_ids[ANALYTICS] = analytics_db_id
        self._sources: dict[str, DataSource] = {}
        self._prepared: set[tuple[str, int, int, str]] = set()
        self._rows: dict[str, dict[str, _Row]] = {}  # campaign slug -> contact key -> row
        self._complete: set[str] = set()  # campaigns whose rows were all loaded
        self._lock = threading.RLock()
        self.duplicates = 0  # extra pages found for one contact (the oldest one is used)
        self.analytics_failures = 0

    def close(self) -> None:
        self.api.close()

    # -- schema ----------------------------------------------------------------------------

    def source(self, role: str, refresh: bool = False) -> DataSource:
        with self._lock:
            found = self._sources.get(role)
        if found is None or refresh:
            found = fetch_data_source(self.api, role, self.database_ids[role])
            with self._lock:
                self._sources[role] = found
        return found

    def specs(self, role: str, campaign: Campaign) -> list[PropSpec]:
        if role == SEQUENCES:
            return sequence_specs(
                self.schema.sequences,
                len(campaign.steps),
                len(campaign.reminders),
                campaign.notion_select,
            )
        if role == CONTACTS:
            return contact_specs(self.schema.contacts)
        if role == ANALYTICS:
            return analytics_specs(self.schema.analytics, campaign.notion_select)
        if role == TEMPLATES:
            return template_specs(self.schema.templates)
        raise KeyError(role)

    def prepare(self, campaign: Campaign) -> None:
        """Check both databases (and the analytics one) before anything is written."""
        key = (campaign.slug, len(campaign.steps), len(campaign.reminders), campaign.notion_select)
        if key in self._prepared:
            return
        problems: dict[str, list[str]] = {}
        for role in self.database_ids:
            result = check_properties(self.source(role).properties, self.specs(role, campaign))
            if not result.ok:
                problems[role] = result.problems()
        if problems:
            raise StoreSchemaError(problems)
        with self._lock:
            self._prepared.add(key)

    def _encode(self, role: str, values: dict[str, Any]) -> dict[str, Any]:
        source = self._sources[role]
        return {name: encode(source.type_of(name), value) for name, value in values.items()}

    def _condition(self, role: str, name: str, op: str, value: Any) -> dict[str, Any]:
        # The condition's key is the property's type (email, rich_text, title, select...).
        return {"property": name, self._sources[role].type_of(name): {op: value}}

    def _campaign_condition(self, campaign: Campaign) -> dict[str, Any]:
        return self._condition(
            SEQUENCES, self.schema.sequences.campaign, "equals", campaign.notion_select
        )

    # -- reading sequences -----------------------------------------------------------------

    def _to_row(self, page: dict[str, Any]) -> _Row | None:
        values = page_values(page)
        email = str(values.get(self.schema.sequences.email) or "").strip()
        if not email:
            return None  # a hand-made row without an address: nothing to send to
        return _Row(page["id"], contact_key(email), values, page.get("created_time") or "")

    def _index(self, pages: Iterable[dict[str, Any]]) -> dict[str, _Row]:
        """Rows by contact; duplicates (a double create) fold into the oldest page."""
        grouped: dict[str, list[_Row]] = {}
        for page in pages:
            row = self._to_row(page)
            if row is not None:
                grouped.setdefault(row.contact_key, []).append(row)
        rows: dict[str, _Row] = {}
        for key, group in grouped.items():
            group.sort(key=lambda r: (r.created_time, r.page_id))
            keep = group[0]
            if len(group) > 1:
                with self._lock:
                    self.duplicates += len(group) - 1
                log.warning("%d extra Email Sequence pages for one contact", len(group) - 1)
                # A step recorded on any copy was sent: never send it again.
                for other in group[1:]:
                    for name, value in other.values.items():
                        if value and not keep.values.get(name):
                            keep.values[name] = value
            rows[key] = keep
        return rows

    def _load_rows(self, campaign: Campaign) -> dict[str, _Row]:
        pages = self.api.query(self.source(SEQUENCES).id, self._campaign_condition(campaign))
        rows = self._index(pages)
        with self._lock:
            self._rows[campaign.slug] = rows
            self._complete.add(campaign.slug)
        return rows

    def _query_rows(self, campaign: Campaign, emails: list[str]) -> dict[str, _Row]:
        """The sequences of these addresses (one query per 100), fresh from Notion."""
        p = self.schema.sequences
        found: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(set(emails)), FILTER_CHUNK):
            by_email = [self._condition(SEQUENCES, p.email, "equals", e) for e in chunk]
            either = by_email[0] if len(by_email) == 1 else {"or": by_email}
            query = {"and": [self._campaign_condition(campaign), either]}
            found.extend(self.api.query(self.source(SEQUENCES).id, query))
        rows = self._index(found)
        with self._lock:
            self._rows.setdefault(campaign.slug, {}).update(rows)
        return rows

    def _existing(self, campaign: Campaign, signups: dict[str, Signup]) -> dict[str, _Row]:
        with self._lock:
            cached = dict(self._rows.get(campaign.slug) or {})
            complete = campaign.slug in self._complete
        if complete:
            return {k: cached[k] for k in signups if k in cached}
        unknown = [k for k in signups if k not in cached]
        emails = [e for k in unknown for e in {k, str(signups[k].email)}]
        if emails:
            cached.update(self._query_rows(campaign, emails))
        return {k: cached[k] for k in signups if k in cached}

    def _row_for(self, campaign: Campaign, key: str) -> _Row | None:
        """The contact's page: from this run's load, else one full load, else one lookup."""
        with self._lock:
            row = (self._rows.get(campaign.slug) or {}).get(key)
            complete = campaign.slug in self._complete
        if row is not None:
            return row
        if not complete:
            # Loading once costs 1 request per 100 rows; a lookup per email would cost 1 each.
            row = self._load_rows(campaign).get(key)
            if row is not None:
                return row
        return self._query_rows(campaign, [key]).get(key)

    def preload(self, campaign: Campaign, contact_keys: Iterable[str]) -> None:
        """Fetch just these contacts' pages (1 request per 100) ahead of `record_sent`, for a
        process that sends a few emails without having loaded all sequences."""
        self.prepare(campaign)
        keys = list(dict.fromkeys(contact_keys))
        with self._lock:
            cached = self._rows.get(campaign.slug) or {}
            keys = [k for k in keys if k not in cached]
        if keys:
            self._query_rows(campaign, keys)

    def load_sequences(self, campaign: Campaign) -> pd.DataFrame:
        self.prepare(campaign)
        rows = self._load_rows(campaign)
        return self._frame(campaign, rows.values())

    def _frame(self, campaign: Campaign, rows: Iterable[_Row]) -> pd.DataFrame:
        p = self.schema.sequences
        steps = len(campaign.steps)
        numbers = {
            "assessment_score": p.assessment_score,
            "red_systems": p.red_systems,
            "orange_systems": p.orange_systems,
            "yellow_systems": p.yellow_systems,
            "green_systems": p.green_systems,
            "gps_score": p.gps_score,
            "money_score": p.money_score,
            "revenue_leak_total": p.revenue_leak_total,
        }
        texts = {
            "first_name": p.first_name,
            "business_name": p.business_name,
            "weakest_system_1": p.weakest_system_1,
            "weakest_system_2": p.weakest_system_2,
        }
        records: list[dict[str, Any]] = []
        for row in rows:
            v = row.values
            record: dict[str, Any] = {
                "contact_key": row.contact_key,
                "email": str(v.get(p.email) or row.contact_key).strip(),
            }
            record.update({col: v.get(name) for col, name in numbers.items()})
            record.update({col: v.get(name) or "" for col, name in texts.items()})
            record["segment"] = (
                v.get(p.segment)
                or classify(int(v.get(p.red_systems) or 0), int(v.get(p.orange_systems) or 0)).value
            )
            # A hand-made row without a signup date starts when the page was created.
            record["signup_at"] = v.get(p.signup_date) or row.created_time or None
            for n in range(1, steps + 1):
                record[sent_column(n)] = v.get(p.sent(n))
            record["completed"] = bool(v.get(p.sequence_completed))
            record["exit_reason"] = v.get(p.exit_reason) or ""
            record["booked"] = bool(str(v.get(p.booking_uid) or "").strip())
            record["unsubscribed"] = bool(v.get(p.unsubscribed))
            record["paused"] = bool(v.get(p.paused))
            record["delivery_state"] = str(v.get(p.delivery_status) or "").strip().lower()
            records.append(record)
        frame = pd.DataFrame.from_records(records, columns=sequence_columns(steps))
        return normalise_sequences(frame, steps)

    # -- signups ---------------------------------------------------------------------------

    def _profile(self, signup: Signup) -> dict[str, Any]:
        p = self.schema.sequences
        return {
            p.first_name: signup.first_name,
            p.business_name: signup.business_name,
            p.assessment_score: signup.assessment_score,
            p.red_systems: signup.red_systems,
            p.orange_systems: signup.orange_systems,
            p.yellow_systems: signup.yellow_systems,
            p.green_systems: signup.green_systems,
            p.gps_score: signup.gps_score,
            p.money_score: signup.money_score,
            p.weakest_system_1: signup.weakest_system_1,
            p.weakest_system_2: signup.weakest_system_2,
            p.revenue_leak_total: signup.revenue_leak_total,
            p.segment: signup.segment.value,
        }

    @staticmethod
    def _changes(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        def same(a: Any, b: Any) -> bool:
            if a is None or b is None:
                return (a in (None, "")) and (b in (None, ""))
            return a == b

        return {name: value for name, value in wanted.items() if not same(current.get(name), value)}

    def _find_contacts(self, signups: dict[str, Signup]) -> dict[str, _Contact]:
        """The CRM contacts of these signups, by contact key (one query per 100 addresses)."""
        if not signups:
            return {}
        c = self.schema.contacts
        source = self.source(CONTACTS)
        # Both the lower-cased key and the address as typed, in case the CRM kept its case.
        emails = sorted({e for k, s in signups.items() for e in (k, str(s.email))})
        found: dict[str, _Contact] = {}
        for chunk in _chunks(emails, FILTER_CHUNK):
            conditions = [self._condition(CONTACTS, c.email, "equals", e) for e in chunk]
            query = conditions[0] if len(conditions) == 1 else {"or": conditions}
            for page in self.api.query(source.id, query):
                values = page_values(page)
                key = contact_key(str(values.get(c.email) or ""))
                if key in signups and key not in found:
                    found[key] = _Contact(page["id"], values)
        return found

    def _update_contact(self, contact: _Contact, signup: Signup) -> None:
        c = self.schema.contacts
        wanted: dict[str, Any] = {
            c.assessment_score: signup.assessment_score,
            c.segment: signup.segment.value,
        }
        # A contact already preparing for a booked call stays there.
        if contact.values.get(c.campaign_status) != c.precall_status:
            wanted[c.campaign_status] = c.nurture_status
        changes = self._changes(contact.values, wanted)
        if changes:
            self.api.update_page(contact.page_id, self._encode(CONTACTS, changes))
            contact.values.update(changes)

    def _new_sequence_values(self, campaign: Campaign, event: SignupEvent) -> dict[str, Any]:
        p = self.schema.sequences
        values: dict[str, Any] = {
            p.email: event.contact_key,
            **self._profile(event.signup),
            p.campaign: campaign.notion_select,
            p.signup_date: event.received_at,
            p.assessment_completed: True,
            p.sequence_completed: False,
            p.unsubscribed: False,
            p.paused: False,
        }
        title = self._sources[SEQUENCES].title
        if title and title not in values:
            values[title] = event.contact_key  # a readable, unique row name
        return values

    def _create_sequence(self, campaign: Campaign, event: SignupEvent) -> _Row:
        values = self._new_sequence_values(campaign, event)
        key = event.contact_key
        source = self.source(SEQUENCES)

        def recover() -> dict[str, Any] | None:
            # A create that timed out may have happened: look before creating again.
            p = self.schema.sequences
            query = {
                "and": [
                    self._campaign_condition(campaign),
                    self._condition(SEQUENCES, p.email, "equals", key),
                ]
            }
            pages = self.api.query(source.id, query)
            return min(pages, key=lambda pg: pg.get("created_time") or "") if pages else None

        page = self.api.create_page(source.id, self._encode(SEQUENCES, values), recover)
        row = self._to_row(page) or _Row(
            page["id"], key, {n: _cached_value(v) for n, v in values.items()}
        )
        with self._lock:
            self._rows.setdefault(campaign.slug, {})[key] = row
        return row

    def upsert_signups(self, campaign: Campaign, events: list[SignupEvent]) -> UpsertReport:
        self.prepare(campaign)
        report = UpsertReport()
        if not events:
            return report
        # Earliest arrival wins for the same contact within one batch (as the SQL store).
        ordered = sorted(events, key=lambda e: (e.received_at, e.source))
        latest: dict[str, Signup] = {}
        for event in ordered:
            latest.setdefault(event.contact_key, event.signup)
        existing = self._existing(campaign, latest)
        # Contacts are needed for new sequences and for refreshed profiles only.
        touching = {
            e.contact_key: e.signup
            for e in ordered
            if e.contact_key not in existing
            or self._changes(existing[e.contact_key].values, self._profile(e.signup))
        }
        contacts = self._find_contacts(touching)
        failures: list[str] = []
        missing_contacts: set[str] = set()
        for event in ordered:
            key = event.contact_key
            try:
                outcome = self._upsert_one(campaign, event, existing, contacts)
            except NotionCallError as error:
                failures.append(f"{key}: {error}")
                continue
            if outcome == "created":
                report.created.append(key)
            elif outcome == "updated":
                report.updated.append(key)
            else:
                report.unchanged.append(key)
            if outcome != "unchanged" and key not in contacts:
                missing_contacts.add(key)
        report.contact_missing.extend(sorted(missing_contacts))
        if failures:
            raise NotionStoreError(
                f"{len(failures)} of {len(ordered)} signups were not stored (a re-run "
                f"finishes them): " + "; ".join(failures[:5])
            )
        return report

    def _upsert_one(
        self,
        campaign: Campaign,
        event: SignupEvent,
        existing: dict[str, _Row],
        contacts: dict[str, _Contact],
    ) -> str:
        key = event.contact_key
        contact = contacts.get(key)
        row = existing.get(key)
        if row is None:
            # Contact first: if the create then fails, the re-run still updates nothing twice.
            if contact is not None:
                self._update_contact(contact, event.signup)
            existing[key] = self._create_sequence(campaign, event)
            return "created"
        changes = self._changes(row.values, self._profile(event.signup))
        if not changes:
            return "unchanged"
        # A new assessment refreshes the profile; the sequence keeps its clock and progress.
        if contact is not None:
            self._update_contact(contact, event.signup)
        self.api.update_page(row.page_id, self._encode(SEQUENCES, changes))
        row.values.update(changes)
        return "updated"

    # -- sending ---------------------------------------------------------------------------

    def _require(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self._sources[SEQUENCES].properties]
        if missing:
            raise StoreSchemaError({SEQUENCES: missing})

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        """One `pages.update`: the step's sent date (+ completion, + clearing Last Error)."""
        self.prepare(campaign)
        p = self.schema.sequences
        if record.kind == "reminder":
            column = p.reminder(record.step_number)
        elif 1 <= record.step_number <= len(campaign.steps):
            column = p.sent(record.step_number)
        else:
            raise ValueError(f"{campaign.name} has no email {record.step_number}")
        if record.kind == "reminder" and self.ledger is not None:
            # The ledger is the reminder's record (a booker may have no sequence page).
            self.ledger.record_sent(campaign, record)
            if self._row_for(campaign, record.contact_key) is None:
                return
        values: dict[str, Any] = {column: record.sent_at}
        if record.completes_sequence:
            values[p.sequence_completed] = True
        self._require(values)
        row = self._row_for(campaign, record.contact_key)
        if row is None:
            raise NotionStoreError(
                f"no Email Sequence page for {record.contact_key} in {campaign.name}"
            )
        if row.values.get(p.last_error):
            values[p.last_error] = ""  # it went out: the earlier failure is history
        cached = {n: _cached_value(v) for n, v in values.items()}
        # A repeat of a write this run already made (a retried delivery) costs nothing.
        if any(row.values.get(n) != v for n, v in cached.items()):
            self.api.update_page(row.page_id, self._encode(SEQUENCES, values))
            with self._lock:
                row.values.update(cached)
        if ANALYTICS in self.database_ids:
            self._log(
                campaign,
                message=record.message_id,
                contact=record.contact_key,
                step_id=record.step_id,
                status="sent",
                segment=record.segment,
                due_at=record.due_at,
                at=record.sent_at,
                provider_id=record.provider_id,
                idempotency_key=record.idempotency_key,
            )

    def record_outcome(self, campaign: Campaign, record: OutcomeRecord) -> None:
        """A failure goes to `Last Error` (written only when it changed); skips (a paused
        contact, every run) are not written, so they cost no requests."""
        self.prepare(campaign)
        if record.kind == "reminder" and self.ledger is not None:
            self.ledger.record_outcome(campaign, record)  # skips settle reminders: kept
        if record.status != "failed":
            return
        p = self.schema.sequences
        text = f"{record.step_id}: {record.reason}"
        row = self._row_for(campaign, record.contact_key)
        if row is not None and row.values.get(p.last_error) != text:
            self.api.update_page(row.page_id, self._encode(SEQUENCES, {p.last_error: text}))
            with self._lock:
                row.values[p.last_error] = text
        if ANALYTICS in self.database_ids:
            self._log(
                campaign,
                message=record.message_id,
                contact=record.contact_key,
                step_id=record.step_id,
                status="failed",
                segment=record.segment,
                due_at=record.due_at,
                at=record.at,
                error=record.reason,
            )

    def record_exit(self, campaign: Campaign, contact_key: str, reason: str) -> None:
        """Stop the nurture for good: `Exit Reason` and `Sequence Completed`, one update."""
        self.prepare(campaign)
        p = self.schema.sequences
        row = self._row_for(campaign, contact_key)
        if row is None:
            log.info("no Email Sequence page to close for an exiting contact")
            return
        wanted = {p.exit_reason: reason, p.sequence_completed: True}
        changes = self._changes(row.values, wanted)
        if changes:
            self.api.update_page(row.page_id, self._encode(SEQUENCES, changes))
            with self._lock:
                row.values.update(changes)

    def set_flags(self, campaign: Campaign, contact_key: str, **flags: Any) -> bool:
        """Set `unsubscribed`, `paused` or `delivery_state` (one update). False: no page.

        `booked` is not a flag here: in Notion it is a non-empty `Booking UID` (`set_booking`).
        """
        p = self.schema.sequences
        names = {"unsubscribed": p.unsubscribed, "paused": p.paused}
        names["delivery_state"] = p.delivery_status
        unknown = set(flags) - set(names)
        if unknown:
            raise ValueError(f"unknown flags for the Notion store: {sorted(unknown)}")
        self.prepare(campaign)
        row = self._row_for(campaign, contact_key)
        if row is None:
            return False
        wanted = {names[k]: v for k, v in flags.items()}
        changes = self._changes(row.values, wanted)
        if changes:
            self.api.update_page(row.page_id, self._encode(SEQUENCES, changes))
            with self._lock:
                row.values.update(changes)
        return True

    def set_booking(
        self, campaign: Campaign, contact_key: str, booking_uid: str, meeting_time: datetime | None
    ) -> bool:
        """Record (or clear, with "" and None) the contact's booking on its sequence page."""
        self.prepare(campaign)
        p = self.schema.sequences
        row = self._row_for(campaign, contact_key)
        if row is None:
            return False
        changes: dict[str, Any] = {}
        if str(row.values.get(p.booking_uid) or "") != booking_uid:
            changes[p.booking_uid] = booking_uid
        current = parse_datetime(row.values.get(p.meeting_time))
        as_text = iso_datetime(meeting_time) if meeting_time else None
        if (iso_datetime(current) if current else None) != as_text:
            changes[p.meeting_time] = meeting_time
        if changes:
            self.api.update_page(row.page_id, self._encode(SEQUENCES, changes))
            with self._lock:
                row.values.update({n: _cached_value(v) for n, v in changes.items()})
        return True

    # -- bookings, reminders and email events (in `notion_bookings`, with the ledger) -----

    def upsert_booking_events(
        self, campaign: Campaign, events: list[BookingEvent]
    ) -> BookingUpsertReport:
        from xmas_pipeline.adapters import notion_bookings

        return notion_bookings.upsert_booking_events(self, campaign, events)

    def load_bookings(self, campaign: Campaign, uids: Iterable[str] | None = None) -> pd.DataFrame:
        from xmas_pipeline.adapters import notion_bookings

        return notion_bookings.load_bookings(self, campaign, uids)

    def load_reminder_log(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import notion_bookings

        return notion_bookings.load_reminder_log(self, campaign)

    def load_contact_flags(self, campaign: Campaign) -> pd.DataFrame:
        from xmas_pipeline.adapters import notion_bookings

        return notion_bookings.load_contact_flags(self, campaign)

    def set_contact_flags(
        self, campaign: Campaign, contact_key: str, email: str = "", **flags: Any
    ) -> None:
        from xmas_pipeline.adapters import notion_bookings

        notion_bookings.set_contact_flags(self, campaign, contact_key, email, **flags)

    def record_delivery_event(self, campaign: Campaign, event: DeliveryEvent) -> bool:
        from xmas_pipeline.adapters import notion_bookings

        return notion_bookings.record_delivery_event(self, campaign, event)

    # -- the send log ----------------------------------------------------------------------

    def _log(
        self,
        campaign: Campaign,
        *,
        message: str,
        contact: str,
        step_id: str,
        status: str,
        segment: str,
        due_at: datetime,
        at: datetime,
        provider_id: str = "",
        error: str = "",
        idempotency_key: str = "",
    ) -> None:
        """One analytics page; best effort: a failure is logged and counted, not raised."""
        a = self.schema.analytics
        source = self.source(ANALYTICS)
        values: dict[str, Any] = {
            a.message_id: message,
            a.email: contact,
            a.campaign: campaign.notion_select,
            a.step: step_id,
            a.status: status,
            a.provider_id: provider_id,
            a.error: error,
            a.segment: segment,
            a.due_at: due_at,
            a.at: at,
            a.idempotency_key: idempotency_key,
        }
        if source.title and source.title not in values:
            values[source.title] = message

        def recover() -> dict[str, Any] | None:
            query = {
                "and": [
                    self._condition(ANALYTICS, a.message_id, "equals", message),
                    self._condition(ANALYTICS, a.status, "equals", status),
                    self._condition(ANALYTICS, a.at, "equals", iso_datetime(at)),
                ]
            }
            pages = self.api.query(source.id, query)
            return pages[0] if pages else None

        try:
            self.api.create_page(source.id, self._encode(ANALYTICS, values), recover)
        except NotionCallError as exc:
            with self._lock:
                self.analytics_failures += 1
            log.warning("send log entry not written to Notion: %s", exc)

    def _all_rows(self, campaign: Campaign) -> dict[str, _Row]:
        with self._lock:
            if campaign.slug in self._complete:
                return dict(self._rows[campaign.slug])
        return self._load_rows(campaign)

    def sent_log(self, campaign: Campaign, start_day: str, end_day: str) -> pd.DataFrame:
        """Sent messages due in [start_day, end_day], from the pages' sent dates; provider
        ids come from the analytics DB when it is on."""
        self.prepare(campaign)
        p = self.schema.sequences
        records: list[dict[str, Any]] = []
        for row in self._all_rows(campaign).values():
            v = row.values
            signup_at = parse_datetime(v.get(p.signup_date) or row.created_time or None)
            segment = v.get(p.segment) or ""
            base = {"contact_key": row.contact_key, "segment": segment, "provider_id": ""}
            for step in campaign.steps:
                sent_at = parse_datetime(v.get(p.sent(step.number)))
                if sent_at is None or signup_at is None:
                    continue
                mid = message_id(campaign.slug, row.contact_key, step.step_id)
                records.append(
                    {
                        **base,
                        "message_id": mid,
                        "kind": "nurture",
                        "step_id": step.step_id,
                        "step_number": step.number,
                        "booking_uid": "",
                        "due_at": signup_at + step.delay,
                        "sent_at": sent_at,
                        "idempotency_key": mid,
                    }
                )
            uid = str(v.get(p.booking_uid) or "")
            meeting = parse_datetime(v.get(p.meeting_time))
            for reminder in campaign.reminders:
                sent_at = parse_datetime(v.get(p.reminder(reminder.number)))
                if sent_at is None or meeting is None or not uid:
                    continue
                mid = message_id(campaign.slug, row.contact_key, reminder.step_id, uid)
                records.append(
                    {
                        **base,
                        "message_id": mid,
                        "kind": "reminder",
                        "step_id": reminder.step_id,
                        "step_number": reminder.number,
                        "booking_uid": uid,
                        "due_at": meeting - reminder.before,
                        "sent_at": sent_at,
                        "idempotency_key": mid,
                    }
                )
        frame = pd.DataFrame.from_records(records, columns=SENT_LOG_COLUMNS)
        frame["due_at"] = pd.to_datetime(frame["due_at"], utc=True)
        frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True)
        frame["step_number"] = frame["step_number"].astype("int64")
        due_day = frame["due_at"].dt.strftime("%Y-%m-%d")
        frame = frame.loc[(due_day >= start_day) & (due_day <= end_day)]
        if ANALYTICS in self.database_ids and not frame.empty:
            frame = self._with_provider_ids(campaign, frame)
        return frame.sort_values(["due_at", "message_id"]).reset_index(drop=True)

    def _with_provider_ids(self, campaign: Campaign, frame: pd.DataFrame) -> pd.DataFrame:
        a = self.schema.analytics
        query = {
            "and": [
                self._condition(ANALYTICS, a.campaign, "equals", campaign.notion_select),
                self._condition(ANALYTICS, a.status, "equals", "sent"),
            ]
        }
        latest: dict[str, tuple[str, str, str]] = {}  # message -> (at, provider id, key)
        for page in self.api.query(self.source(ANALYTICS).id, query):
            v = page_values(page)
            mid = str(v.get(a.message_id) or "")
            entry = (
                str(v.get(a.at) or ""),
                str(v.get(a.provider_id) or ""),
                str(v.get(a.idempotency_key) or ""),
            )
            if mid and (mid not in latest or entry[0] >= latest[mid][0]):
                latest[mid] = entry
        frame = frame.copy()
        ids = frame["message_id"].map(lambda m: latest.get(m, ("", "", ""))[1])
        keys = frame["message_id"].map(lambda m: latest.get(m, ("", "", ""))[2])
        frame["provider_id"] = ids
        frame["idempotency_key"] = keys.where(keys != "", frame["idempotency_key"])
        return frame


def _cached_value(value: Any) -> Any:
    """A written value as a later read would decode it (dates as ISO strings)."""
    if isinstance(value, datetime):
        return iso_datetime(value)
    return value


def setup_notion(
    store: NotionStore, campaign: Campaign | None = None, templates_db_id: str | None = None
) -> SetupReport:
    """Add the properties the pipeline needs and the databases lack (`xmas-pipeline notion
    setup`). Existing properties are never changed; a wrong type is reported as a conflict."""
    campaign = campaign or load_campaign()
    report = SetupReport()
    roles = dict(store.database_ids)
    if templates_db_id:
        roles[TEMPLATES] = templates_db_id
    for role, database_id in roles.items():
        source = fetch_data_source(store.api, role, database_id)
        result = check_properties(source.properties, store.specs(role, campaign))
        report.checked.append(role)
        report.added[role] = [s.name for s in result.missing]
        if result.conflicts:
            report.conflicts[role] = result.conflicts
        if result.missing:
            updated = store.api.update_data_source(
                source.id, {s.name: s.create_config() for s in result.missing}
            )
            source = DataSource(role, database_id, updated)  # the reply is the new schema
        if role in store.database_ids:
            with store._lock:
                store._sources[role] = source
    with store._lock:
        store._prepared.clear()
    return report
