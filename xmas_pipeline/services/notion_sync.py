"""Bringing Notion in step with the store: drain the queue of contacts whose pages are
behind, at Notion's pace, and write only what differs.

For each batch of up to 100 queued contacts: read their snapshots from the store (a few
SQL queries), find CRM contact pages not known yet (1 query per 100 addresses, and none
once the whole CRM has been read), then per contact at most one request per page: create
the Email Sequence page (with every value already known, the welcome's sent date
included), or update what changed since the last write; update the CRM contact. A contact
is settled only if it did not change while it was being written (the queue's version), so
a change made meanwhile is synced by the next pass.

When Notion is unavailable (429 storms, 5xx, timeouts, after the API client's own retries)
the pass stops and gives its contacts back untouched; nothing else waits for it. A contact
Notion refuses (a validation error, say) is retried later with its error shown in the UI.

Several campaigns: each person has one Email Sequence page per campaign (its `Campaign`
select), found and created by (email, Campaign select), never another campaign's. The CRM
contact page is shared: each campaign writes its own status property, and only the
campaign owning the person's booking writes the booking fields (`booking_owners`).
`sync_all_campaigns` drains every campaign's queue through one client (one rate budget),
a batch of each in turn; `sync_to_notion` is the pass of one campaign.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.notion.mirror import (
    comparable,
    contact_changes,
    differences,
    for_create,
    sequence_values,
)
from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.schema import NotionSchema, status_property
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import (
    ContactPageRecord,
    ContactSnapshot,
    NotionQueue,
    QueueEntry,
    QueueStats,
    StoreSchemaError,
)

SCHEMA_STATE = "schema"
CONTACTS_COMPLETE = "contacts_complete"  # the whole CRM was read: unknown means absent
# The Email Sequence DB was read whole (`notion import`): a contact without a recorded
# page has none. Until then every create looks for an existing page first (1 query), so
# pages the first tool made are never duplicated. Kept per campaign as
# "sequences_complete:<slug>"; the bare name is what a store from before campaigns holds.
SEQUENCES_COMPLETE = "sequences_complete"
SCHEMA_TTL = timedelta(hours=1)
MAX_RETRY_DELAY = timedelta(minutes=30)

SnapshotSource = Callable[[Campaign, list[str]], dict[str, ContactSnapshot]]


@dataclass
class SyncReport:
    contacts: int = 0  # contacts brought in step
    created: int = 0  # Email Sequence pages created
    found: int = 0  # pages that already existed when a create was due (a lost answer)
    sequence_updates: int = 0
    contact_updates: int = 0
    contact_lookups: int = 0  # contacts looked up in the CRM
    logged: int = 0  # send log pages
    requests: int = 0  # HTTP requests to Notion, retries included
    failed: list[tuple[str, str]] = field(default_factory=list)  # contact, error
    stopped: str = ""  # why the pass ended early ("" when the queue ran dry)


def sequences_state(campaign: Campaign) -> str:
    """The `notion_state` name saying the campaign's Email Sequence pages were all read."""
    return f"{SEQUENCES_COMPLETE}:{campaign.slug}"


def sequences_complete(pages: SqlNotionPages, campaign: Campaign) -> bool:
    """Whether `notion import` read the campaign's pages. The bare flag of a store from
    before campaigns counts for every campaign: that import read the one campaign the
    earlier tool filled, and a campaign added since has only pages this pipeline made
    (each recorded before its create, so still looked up when an answer was lost)."""
    return "yes" in (pages.state(sequences_state(campaign)), pages.state(SEQUENCES_COMPLETE))


def check_distinct(campaigns: Sequence[Campaign], schema: NotionSchema) -> None:
    """ValueError when two campaigns would share a slug, a `Campaign` select option or a
    CRM status property: their pages or statuses would be mixed up in Notion."""
    problems: list[str] = []
    for what, value_of in (
        ("slug", lambda c: c.slug),
        ("notion_select", lambda c: c.notion_select),
        ("notion_status_property", lambda c: status_property(schema.contacts, c)),
    ):
        seen: dict[str, str] = {}
        for campaign in campaigns:
            value = value_of(campaign)
            if value in seen:
                problems.append(f"{seen[value]} and {campaign.slug} share {what} {value!r}")
            seen.setdefault(value, campaign.slug)
    if problems:
        raise ValueError("campaigns clash in Notion: " + "; ".join(problems))


def _transient(error: NotionCallError) -> bool:
    """Notion is unavailable, not refusing this contact: stop the pass."""
    status = error.status
    return status is None or status in (401, 403, 429, 529) or status >= 500


def retry_delay(attempts: int) -> timedelta:
    return min(MAX_RETRY_DELAY, timedelta(seconds=30 * 2 ** min(attempts, 10)))


def load_schema(notion: NotionSync, pages: SqlNotionPages, campaign: Campaign) -> None:
    """The databases' schema from the store when it was checked within the hour, else from
    Notion (2 requests a database), checked either way, and kept for the next runs."""
    saved = pages.state(SCHEMA_STATE)
    cached = False
    if saved:
        entry = json.loads(saved)
        at = datetime.fromisoformat(entry["at"])
        if datetime.now(UTC) - at < SCHEMA_TTL:
            notion.import_schema(entry["sources"])
            cached = True
    before = notion.export_schema()
    try:
        notion.prepare(campaign)  # looks up what the cache did not have; raises if unusable
    except StoreSchemaError:
        if not cached:
            raise
        # The kept schema may predate `notion setup` (a new campaign's status property,
        # say): asked of Notion again before the campaign is refused.
        notion.forget_schema()
        notion.prepare(campaign)
    after = notion.export_schema()
    if after != before or not saved:
        pages.set_state(
            SCHEMA_STATE, json.dumps({"at": datetime.now(UTC).isoformat(), "sources": after})
        )


def sync_to_notion(
    *,
    snapshots: SnapshotSource,
    queue: NotionQueue,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    holder: str,
    time_budget_s: float = 600.0,
    batch: int = 100,
    clock: Callable[[], float] = time.monotonic,
) -> SyncReport:
    report = SyncReport()
    start_requests = notion.api.requests_sent
    deadline = clock() + time_budget_s
    try:
        try:
            load_schema(notion, pages, campaign)
        except NotionCallError as error:
            report.stopped = f"Notion unavailable: {error}"
            return report
        while clock() < deadline and not report.stopped:
            entries = queue.take(campaign, holder, batch)
            if not entries:
                break
            _sync_batch(entries, snapshots, queue, pages, notion, campaign, report)
        if not report.stopped and notion.logs_messages:
            _log_messages(pages, notion, campaign, report, deadline, clock)
    finally:
        report.requests = notion.api.requests_sent - start_requests
    return report


def sync_all_campaigns(
    *,
    campaigns: Sequence[Campaign],
    snapshots: SnapshotSource,
    queue: NotionQueue,
    pages: SqlNotionPages,
    notion: NotionSync,
    holder: str,
    time_budget_s: float = 600.0,
    batch: int = 100,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, SyncReport]:
    """Every campaign's queue drained by one pass through one client, so under one rate
    budget: a batch of each campaign in turn (round-robin), so a long queue in one
    campaign never starves another. A report per campaign slug. Notion unavailable stops
    the whole pass (every campaign's report says why). A campaign whose Notion schema is
    unusable (a property missing) is left out, its report saying why, and the others are
    synced; when none is usable, `StoreSchemaError` is raised before anything is written."""
    check_distinct(campaigns, notion.schema)
    reports = {c.slug: SyncReport() for c in campaigns}
    deadline = clock() + time_budget_s

    def counted(campaign: Campaign, work: Callable[[], None]) -> None:
        before = notion.api.requests_sent
        try:
            work()
        finally:
            reports[campaign.slug].requests += notion.api.requests_sent - before

    def stop_all(why: str) -> None:
        for report in reports.values():
            report.stopped = report.stopped or why

    usable = []
    refused: StoreSchemaError | None = None
    for campaign in campaigns:
        try:
            counted(campaign, lambda c=campaign: load_schema(notion, pages, c))
        except NotionCallError as error:
            stop_all(f"Notion unavailable: {error}")
            return reports
        except StoreSchemaError as error:
            # One campaign's missing property (its status, before `notion setup`) stops
            # that campaign's sync only: its contacts wait in the queue, the others go.
            reports[campaign.slug].stopped = str(error)
            refused = refused or error
            continue
        usable.append(campaign)
    if refused is not None and not usable:
        raise refused  # nothing can be synced: the run fails, saying what to add
    active = list(usable)
    while active and clock() < deadline:
        for campaign in list(active):
            report = reports[campaign.slug]
            entries = queue.take(campaign, holder, batch)
            if not entries:
                active.remove(campaign)
                continue
            counted(
                campaign,
                lambda c=campaign, e=entries, r=report: _sync_batch(
                    e, snapshots, queue, pages, notion, c, r
                ),
            )
            if report.stopped:
                stop_all(report.stopped)
                return reports
            if clock() >= deadline:
                break
    if notion.logs_messages:
        for campaign in campaigns:
            report = reports[campaign.slug]
            counted(
                campaign,
                lambda c=campaign, r=report: _log_messages(pages, notion, c, r, deadline, clock),
            )
            if report.stopped:
                stop_all(report.stopped)
                break
    return reports


def _sync_batch(
    entries: list[QueueEntry],
    snapshots: SnapshotSource,
    queue: NotionQueue,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    report: SyncReport,
) -> None:
    read_at = datetime.now(UTC)
    keys = [e.contact_key for e in entries]
    snaps = snapshots(campaign, keys)
    try:
        contacts = _contact_pages(pages, notion, snaps, report)
    except NotionCallError as error:
        queue.give_back(campaign, entries)
        report.stopped = f"Notion unavailable: {error}"
        return
    records = pages.sequence_pages(campaign, keys)
    imported = sequences_complete(pages, campaign)
    owners = pages.booking_owners(keys)
    done: list[QueueEntry] = []
    for index, entry in enumerate(entries):
        snap = snaps.get(entry.contact_key)
        try:
            if snap is not None:
                # The CRM page is shared: its booking fields are the owner campaign's.
                owns = owners.get(entry.contact_key, campaign.slug) == campaign.slug
                _sync_contact(
                    snap, records, contacts, pages, notion, campaign, report, imported, owns
                )
        except NotionCallError as error:
            if _transient(error):
                queue.give_back(campaign, entries[index:])
                report.stopped = f"Notion unavailable: {error}"
                break
            if error.status == 404:
                # The page was deleted in Notion: a new one is made at the next pass.
                pages.forget_sequence_page(campaign, entry.contact_key)
            if error.status == 400:
                notion.forget_schema()  # a property may have been renamed or retyped
                pages.set_state(SCHEMA_STATE, "")
            queue.retry_later(campaign, entry, str(error), retry_delay(entry.attempts))
            report.failed.append((entry.contact_key, str(error)))
            continue
        done.append(entry)
        report.contacts += 1
    queue.settle(campaign, done, read_at)


def _contact_pages(
    pages: SqlNotionPages,
    notion: NotionSync,
    snaps: dict[str, ContactSnapshot],
    report: SyncReport,
) -> dict[str, ContactPageRecord]:
    """Known CRM pages of these contacts; the unknown ones looked up (1 query per 100)
    unless the whole CRM has been read, and remembered either way."""
    known = pages.contact_pages(snaps)
    unknown = {k: s.email for k, s in snaps.items() if k not in known}
    if unknown and pages.state(CONTACTS_COMPLETE) != "yes":
        found = notion.find_contacts(unknown)
        report.contact_lookups += len(unknown)
        fresh = {
            k: ContactPageRecord(found[k].page_id, found[k].values)
            if k in found
            else ContactPageRecord("", {})
            for k in unknown
        }
        pages.save_contact_pages(fresh)
        known.update(fresh)
    return known


def _sync_contact(
    snap: ContactSnapshot,
    records: dict[str, Any],
    contacts: dict[str, ContactPageRecord],
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    report: SyncReport,
    imported: bool,
    owns_booking: bool = True,
) -> None:
    key = snap.contact_key
    if snap.sequence is not None:
        title = notion.sequence_title
        wanted = sequence_values(notion.schema, campaign, snap, title)
        record = records.get(key)
        if record is None or not record.page_id:
            look_first = (record is not None and record.create_started) or not imported
            pages.start_create(campaign, key)
            page, created = notion.create_sequence(campaign, key, for_create(wanted), look_first)
            seen = {**_jsonable(wanted), **page_values(page)} if created else page_values(page)
            if created:
                report.created += 1
            else:
                report.found += 1
                changes = differences(seen, {k: v for k, v in wanted.items() if k != title})
                if changes:
                    notion.update_sequence(page["id"], changes)
                    report.sequence_updates += 1
                    seen.update(_jsonable(changes))
            pages.save_sequence_page(campaign, key, page["id"], _jsonable(seen))
        else:
            # The title is set once, on create: a row people renamed keeps its name.
            changes = differences(record.written, {k: v for k, v in wanted.items() if k != title})
            if changes:
                notion.update_sequence(record.page_id, changes)
                report.sequence_updates += 1
                pages.save_sequence_page(
                    campaign, key, record.page_id, {**record.written, **_jsonable(changes)}
                )
    contact = contacts.get(key)
    if contact is not None and contact.page_id:
        changes = contact_changes(
            notion.schema, campaign, snap, contact.values, owns_booking=owns_booking
        )
        if changes:
            notion.update_contact(contact.page_id, changes)
            report.contact_updates += 1
            values = {**contact.values, **_jsonable(changes)}
            contacts[key] = ContactPageRecord(contact.page_id, values)
            pages.save_contact_pages({key: contacts[key]})


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {name: comparable(value) for name, value in values.items()}


def _log_messages(
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    report: SyncReport,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    """The optional send log: one Email Analytics page per message sent or failed."""
    while clock() < deadline:
        rows = pages.unlogged_messages(campaign)
        if not rows:
            return
        for row in rows:
            try:
                page_id = notion.log_message(campaign, row)
            except NotionCallError as error:
                if _transient(error):
                    report.stopped = f"Notion unavailable: {error}"
                    return
                report.failed.append((row["message_id"], str(error)))
                page_id = ""  # refused for good: not tried again every pass
            pages.mark_logged(campaign, row["log_key"], page_id)
            report.logged += 1


def combined_report(reports: Mapping[str, SyncReport]) -> SyncReport:
    """One pass's reports (one per campaign) as one: counts summed, failures listed, the
    first reason a campaign stopped."""
    total = SyncReport()
    for report in reports.values():
        for name in (
            "contacts",
            "created",
            "found",
            "sequence_updates",
            "contact_updates",
            "contact_lookups",
            "logged",
            "requests",
        ):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        total.failed.extend(report.failed)
        total.stopped = total.stopped or report.stopped
    return total


def combined_stats(stats: Iterable[QueueStats]) -> QueueStats:
    """Every campaign's Notion queue as one (the sync drains them under one budget)."""
    every = list(stats)
    oldest = [one.oldest_queued_at for one in every if one.oldest_queued_at is not None]
    return QueueStats(
        depth=sum(one.depth for one in every),
        ready=sum(one.ready for one in every),
        oldest_queued_at=min(oldest) if oldest else None,
        failing=sum(one.failing for one in every),
        errors=[error for one in every for error in one.errors],
    )
