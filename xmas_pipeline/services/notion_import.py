"""`xmas-pipeline notion import`: the first run against the databases an earlier tool
(the original server, or this pipeline when Notion was its store) already filled.

It reads every Email Sequence page of the campaign and every CRM contact once (1 request
per 100 pages, plus the schema check that the sync then reuses from the store), and brings
the store in line with what they show, through the store's own methods:

- each contact's pages (duplicates folded into the oldest, every sent date kept) give its
  sequence: the profile, and the Signup Date (else the page's creation) as its start;
- every `Email N Sent` / `Reminder N Sent` date becomes a sent message under the id the
  pipeline itself would give it, so neither the due logic nor the send journal ever sends
  that step again (a reminder's id needs the page's Booking UID: without one it is left out);
- Sequence Completed / Exit Reason end the sequence; Unsubscribed, Paused and Delivery
  Status become the contact's flags; a booking (the page's Booking UID, or Booked in the
  CRM) stops the nurture, as it would have;
- each contact's page and the CRM's contact pages are recorded with their values as read,
  so the sync writes only what really differs and never creates a second page.

When the store already knows a contact, it wins for what the pipeline owns: its clock, its
profile (unless the import made the sequence in the first place), and the steps it sent.
What the store lacks and Notion shows (a sent step, an exit, an unsubscribe) is taken.

Several campaigns (`services.notion_import_all`): the Email Sequence DB and the CRM are read once;
each page goes to the campaign its `Campaign` select names, so one person's pages in two
campaigns become two sequences and no campaign adopts another's page. A page naming no
campaign loaded (or none) is counted and listed, and left alone.

Idempotent: a second run writes nothing and queues nothing. Order matters for a sync
running meanwhile: the CRM and each contact's page are recorded before the store writes
that queue the contact, so a sync never creates a page that already exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from xmas_pipeline.adapters.notion.mirror import comparable, differences
from xmas_pipeline.adapters.notion.props import page_values, parse_datetime
from xmas_pipeline.adapters.notion.schema import SequenceProperties
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.notion.workspace import ContactPage, SequenceRow
from xmas_pipeline.adapters.sql.engine import utc
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.booking_state import BOOKED
from xmas_pipeline.core.bookings import check_uid
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.email_events import stronger_state
from xmas_pipeline.core.ports import ContactPageRecord, ContactSnapshot, SentRecord
from xmas_pipeline.core.signup import Signup, SignupEvent, field_errors
from xmas_pipeline.services.notion_sync import (
    CONTACTS_COMPLETE,
    load_schema,
    sequences_complete,
    sequences_state,
)

IMPORTED = "imported"  # the provider id of a message the earlier tool sent
SOURCE_PREFIX = "notion:"  # a sequence's source when the import made it
DELIVERY_STATES = ("bounced", "complained")
BATCH = 100  # contacts per round of store writes


@dataclass
class ImportReport:
    pages: int = 0  # Email Sequence pages of the campaign read
    without_email: int = 0  # pages with no address: nothing to import
    contacts: int = 0  # contacts those pages are about
    duplicate_pages: list[str] = field(default_factory=list)  # extra pages folded (ids)
    crm_contacts: int = 0  # CRM contact pages read
    crm_saved: int = 0  # CRM pages recorded (new or changed since last seen)
    created: int = 0  # sequences made in the store
    refreshed: int = 0  # imported sequences whose profile the page changed
    kept: int = 0  # contacts the pipeline signed up itself: the store's profile kept
    emails: int = 0  # nurture emails recorded as sent
    reminders: int = 0  # reminders recorded as sent
    exits: int = 0
    flags: int = 0  # contacts whose unsubscribe, pause or delivery state changed
    booked: int = 0  # contacts whose nurture stops for a booking
    pages_mapped: int = 0  # page records saved for the sync
    skipped: list[tuple[str, str]] = field(default_factory=list)  # contact, why not imported
    notes: list[tuple[str, str]] = field(default_factory=list)  # contact, what to know
    requests: int = 0  # HTTP requests to Notion, retries included
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        counts = (self.crm_saved, self.created, self.refreshed, self.emails, self.reminders)
        counts += (self.exits, self.flags, self.booked, self.pages_mapped)
        return any(counts)

    def summary(self, limit: int = 10) -> str:
        lines = [
            f"Email Sequence pages read: {self.pages} ({self.without_email} without an address)",
            f"contacts: {self.contacts}; duplicate pages folded into a contact's oldest: "
            f"{len(self.duplicate_pages)}",
            f"CRM contacts read: {self.crm_contacts} ({self.crm_saved} recorded)",
            f"sequences: {self.created} created, {self.refreshed} refreshed, "
            f"{self.kept} kept as the store has them",
            f"recorded as sent: {self.emails} emails, {self.reminders} reminders",
            f"exits: {self.exits}, flags changed: {self.flags}, "
            f"nurture stopped for a booking: {self.booked}",
            f"pages recorded for the sync: {self.pages_mapped}",
        ]
        for title, items in (
            ("skipped (not imported)", self.skipped),
            ("notes", self.notes),
        ):
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {who}: {why}" for who, why in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        if self.duplicate_pages:
            shown = ", ".join(self.duplicate_pages[:limit])
            more = "" if len(self.duplicate_pages) <= limit else ", ..."
            lines.append(f"duplicate pages (left in Notion, never written): {shown}{more}")
        lines.append(f"Notion requests: {self.requests} ({self.seconds:.1f} s)")
        if not self.changed:
            lines.append("nothing changed: everything was imported already")
        return "\n".join(lines)


@dataclass(frozen=True)
class PageState:
    """What one contact's pages show, in the store's terms."""

    key: str
    page_id: str
    signup: SignupEvent | None  # None: the page's values are not a valid signup
    problem: str  # why `signup` is None
    nurture: dict[int, datetime]  # step -> sent
    reminders: dict[int, datetime]  # reminder -> sent
    booking_uid: str
    meeting_time: datetime | None
    stopped: bool  # Sequence Completed ticked, or an Exit Reason
    exit_reason: str
    unsubscribed: bool
    paused: bool | None  # None: the page has no Paused value to take
    delivery_state: str


def text_of(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _moment(values: dict[str, Any], name: str) -> datetime | None:
    raw = values.get(name)
    try:
        return parse_datetime(raw) if raw else None
    except ValueError:
        raise ValueError(f"{name}: not a date: {raw!r}") from None


def read_page(row: SequenceRow, p: SequenceProperties, campaign: Campaign) -> PageState:
    """A contact's (folded) page values read; ValueError when a date cannot be read."""
    v = row.values
    start = _moment(v, p.signup_date) or parse_datetime(row.created_time or None)
    texts = ("first_name", "business_name", "weakest_system_1", "weakest_system_2")
    numbers = ("assessment_score", "red_systems", "orange_systems", "yellow_systems")
    numbers += ("green_systems", "gps_score", "money_score", "revenue_leak_total")
    data: dict[str, Any] = {"email": text_of(v.get(p.email))}
    data |= {name: text_of(v.get(getattr(p, name))) for name in texts}
    data |= {name: v.get(getattr(p, name)) for name in numbers}
    signup: SignupEvent | None = None
    problem = ""
    if start is None:
        problem = "no Signup Date and no creation time"
    else:
        try:
            signup = SignupEvent(
                signup=Signup.model_validate(data),
                received_at=start,
                source=f"{SOURCE_PREFIX}{row.page_id}",
            )
        except ValidationError as exc:
            problem = "; ".join(f"{k}: {m}" for k, m in field_errors(exc).items())
    nurture = {s.number: _moment(v, p.sent(s.number)) for s in campaign.steps}
    reminders = {r.number: _moment(v, p.reminder(r.number)) for r in campaign.reminders}
    paused = v.get(p.paused)
    return PageState(
        key=signup.contact_key if signup else row.contact_key,  # as the intake keys it
        page_id=row.page_id,
        signup=signup,
        problem=problem,
        nurture={n: at for n, at in nurture.items() if at is not None},
        reminders={n: at for n, at in reminders.items() if at is not None},
        booking_uid=text_of(v.get(p.booking_uid)),
        meeting_time=_moment(v, p.meeting_time),
        stopped=bool(v.get(p.sequence_completed)) or bool(text_of(v.get(p.exit_reason))),
        exit_reason=text_of(v.get(p.exit_reason)),
        unsubscribed=bool(v.get(p.unsubscribed)),
        paused=None if paused is None else bool(paused),
        delivery_state=text_of(v.get(p.delivery_status)).lower(),
    )


def import_from_notion(
    *, store: SqlStore, notion: NotionSync, campaign: Campaign, pages: SqlNotionPages | None = None
) -> ImportReport:
    """Read the campaign's pages and the CRM, then bring the store in line (see above)."""
    started = time.monotonic()
    pages = pages or SqlNotionPages(store.url, engine=store.engine)
    report = ImportReport()
    first_request = notion.api.requests_sent
    try:
        load_schema(notion, pages, campaign)  # checked and kept: the sync pays nothing for it
        raw = notion.sequence_pages(campaign)
        crm = notion.all_contacts()
    finally:
        report.requests = notion.api.requests_sent - first_request
    # Everything Notion has to say is read: only now is anything written.
    save_crm(pages, crm, report)
    import_pages(store, notion, campaign, pages, raw, crm, report)
    report.seconds = time.monotonic() - started
    return report


def import_pages(
    store: SqlStore,
    notion: NotionSync,
    campaign: Campaign,
    pages: SqlNotionPages,
    raw: list[dict[str, Any]],
    crm: dict[str, ContactPage],
    report: ImportReport,
) -> None:
    """The campaign's pages (`raw`, all of them) into the store."""
    rows = _index(notion, raw, report)
    by_id = {page["id"]: page for page in raw}
    status = notion.schema.contacts.booking_status
    booked_in_crm = {key for key, page in crm.items() if page.values.get(status) == BOOKED}
    sent_reminders = _sent_reminders(store, campaign)
    for keys in _chunks(sorted(rows), BATCH):
        states: list[PageState] = []
        for key in keys:
            try:
                states.append(read_page(rows[key], notion.schema.sequences, campaign))
            except ValueError as exc:
                report.skipped.append((key, str(exc)))
        _map_pages(pages, campaign, states, by_id, report)
        present = _upsert(store, campaign, states, report)
        snaps = store.contact_snapshots(campaign, present)
        for state in states:
            snap = snaps.get(state.key)
            if snap is not None:
                booked = bool(state.booking_uid) or state.key in booked_in_crm
                _apply(store, campaign, state, snap, booked, sent_reminders, report)
    # Every existing page of the campaign is mapped: its sync may now create pages
    # without looking first.
    if not sequences_complete(pages, campaign):
        pages.set_state(sequences_state(campaign), "yes")


def _index(
    notion: NotionSync, raw: list[dict[str, Any]], report: ImportReport
) -> dict[str, SequenceRow]:
    """The pages by contact, duplicates folded into the oldest (counted and listed)."""
    rows, _ = notion.index_rows(raw)
    kept = {row.page_id for row in rows.values()}
    addressed = [page["id"] for page in raw if notion.to_row(page) is not None]
    report.pages, report.contacts = len(raw), len(rows)
    report.without_email = len(raw) - len(addressed)
    report.duplicate_pages = sorted(page_id for page_id in addressed if page_id not in kept)
    return rows


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def save_crm(pages: SqlNotionPages, crm: dict[str, ContactPage], report: ImportReport) -> None:
    """Every CRM contact page, as read; then the sync knows an unknown address is absent."""
    report.crm_contacts = len(crm)
    known = pages.contact_pages(crm)
    fresh = {
        key: ContactPageRecord(page.page_id, {n: comparable(x) for n, x in page.values.items()})
        for key, page in crm.items()
    }
    changed = {
        key: record
        for key, record in fresh.items()
        if key not in known
        or known[key].page_id != record.page_id
        or differences(known[key].values, record.values)
    }
    pages.save_contact_pages(changed)
    report.crm_saved = len(changed)
    if pages.state(CONTACTS_COMPLETE) != "yes":
        pages.set_state(CONTACTS_COMPLETE, "yes")


def _map_pages(
    pages: SqlNotionPages,
    campaign: Campaign,
    states: list[PageState],
    by_id: dict[str, dict[str, Any]],
    report: ImportReport,
) -> None:
    """Each contact's page with its own values as read (not the folded ones: the sync then
    writes a duplicate's extra dates onto it)."""
    records = pages.sequence_pages(campaign, [s.key for s in states])
    for state in states:
        seen = {n: comparable(x) for n, x in page_values(by_id[state.page_id]).items()}
        record = records.get(state.key)
        if record and record.page_id == state.page_id and not differences(record.written, seen):
            continue
        pages.save_sequence_page(campaign, state.key, state.page_id, seen)
        report.pages_mapped += 1


def _upsert(
    store: SqlStore, campaign: Campaign, states: list[PageState], report: ImportReport
) -> set[str]:
    """Create the sequences the store lacks; refresh the profile of those the import made.
    Returns the contacts that have a sequence now."""
    before = store.contact_snapshots(campaign, [s.key for s in states])
    events: list[SignupEvent] = []
    present: set[str] = set()
    for state in states:
        seq = before[state.key].sequence if state.key in before else None
        ours = seq is not None and str(seq.get("source") or "").startswith(SOURCE_PREFIX)
        if seq is not None and not ours:
            report.kept += 1  # signed up through the pipeline: its profile wins
        elif state.signup is not None:
            events.append(state.signup)
        elif seq is None:
            report.skipped.append((state.key, state.problem))
            continue
        else:
            report.notes.append((state.key, f"profile not refreshed: {state.problem}"))
        present.add(state.key)
    if events:
        # People the first tool already emailed: no double opt-in confirmation for them.
        imported = campaign.model_copy(update={"double_opt_in": False})
        result = store.upsert_signups(imported, events)
        report.created += len(result.created)
        report.refreshed += len(result.updated)
    return present


def _sent_reminders(store: SqlStore, campaign: Campaign) -> set[tuple[str, int]]:
    log = store.load_reminder_log(campaign)
    sent = log.loc[log["status"] == "sent"]
    return {(str(u), int(n)) for u, n in zip(sent["booking_uid"], sent["step_number"], strict=True)}


def _apply(
    store: SqlStore,
    campaign: Campaign,
    page: PageState,
    snap: ContactSnapshot,
    booked: bool,
    sent_reminders: set[tuple[str, int]],
    report: ImportReport,
) -> None:
    """What the page shows and the store lacks, written through the store's methods."""
    seq = snap.sequence or {}
    key = page.key
    start = utc(seq["signup_at"])
    segment = str(seq.get("segment") or "")
    last_imported = False
    for step in campaign.steps:
        at = page.nurture.get(step.number)
        if at is None or step.number in snap.nurture_sent:
            continue  # not sent, or the store's own record wins
        mid = message_id(campaign.slug, key, step.step_id)
        last = step.number == campaign.last_step
        store.record_sent(
            campaign,
            SentRecord(
                message_id=mid,
                idempotency_key=mid,
                contact_key=key,
                kind="nurture",
                step_id=step.step_id,
                step_number=step.number,
                due_at=start + step.delay,
                sent_at=at,
                provider_id=IMPORTED,
                segment=segment,
                completes_sequence=last,
            ),
        )
        report.emails += 1
        last_imported = last_imported or last
    _note_gaps(page, snap, report)
    _apply_reminders(store, campaign, page, segment, sent_reminders, report)
    # An exit Notion shows and the store lacks is taken; a completed store sequence wins.
    if page.stopped and not seq.get("completed") and (page.exit_reason or not last_imported):
        store.record_exit(campaign, key, page.exit_reason)
        report.exits += 1
    flags = _flag_changes(page, snap)
    if flags:
        store.set_contact_flags(campaign, key, email=key, **flags)
        report.flags += 1
    if booked and not seq.get("booked"):
        store.set_flags(campaign, key, booked=True)
        report.booked += 1


def _flag_changes(page: PageState, snap: ContactSnapshot) -> dict[str, Any]:
    """The exit flags the page shows and the store lacks."""
    flags: dict[str, Any] = {}
    if page.unsubscribed and not snap.unsubscribed:
        flags["unsubscribed"] = True  # never undone
    if page.paused is not None and page.paused != snap.paused:
        flags["paused"] = page.paused  # people decide pauses in Notion
    current, shown = snap.delivery_state, page.delivery_state
    if shown in DELIVERY_STATES and stronger_state(current, shown) != current:
        flags["delivery_state"] = shown  # only ever stronger
    return flags


def _note_gaps(page: PageState, snap: ContactSnapshot, report: ImportReport) -> None:
    """Steps before the last one shown that nobody sent: the due logic sends them first."""
    if not page.nurture:
        return
    last = max(page.nurture)
    have = set(snap.nurture_sent) | set(page.nurture)
    gaps = [str(n) for n in range(1, last) if n not in have]
    if gaps:
        why = f"email {', '.join(gaps)} not shown as sent before email {last}: they go next"
        report.notes.append((page.key, why))


def _apply_reminders(
    store: SqlStore,
    campaign: Campaign,
    page: PageState,
    segment: str,
    sent_reminders: set[tuple[str, int]],
    report: ImportReport,
) -> None:
    if not page.reminders:
        return
    uid = page.booking_uid
    try:
        check_uid(uid, "Booking UID")
    except ValueError as exc:
        numbers = ", ".join(str(n) for n in sorted(page.reminders))
        report.notes.append((page.key, f"reminder {numbers} not imported: {exc}"))
        return
    for reminder in campaign.reminders:
        at = page.reminders.get(reminder.number)
        if at is None or (uid, reminder.number) in sent_reminders:
            continue
        mid = message_id(campaign.slug, page.key, reminder.step_id, uid)
        due = page.meeting_time - reminder.before if page.meeting_time else at
        store.record_sent(
            campaign,
            SentRecord(
                message_id=mid,
                idempotency_key=mid,
                contact_key=page.key,
                kind="reminder",
                step_id=reminder.step_id,
                step_number=reminder.number,
                due_at=due,
                sent_at=at,
                provider_id=IMPORTED,
                segment=segment,
                booking_uid=uid,
            ),
        )
        sent_reminders.add((uid, reminder.number))
        report.reminders += 1
