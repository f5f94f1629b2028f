"""What people change in Notion, brought into the store (`notion_edits_sensor`), by the
ownership rule of `adapters.notion.mirror`: the store wins for what the pipeline does, Notion
for what people decide.

- Email Sequence DB: `Paused` (either way) and `Unsubscribed` ticked by hand go into the
  store as the contact's flags (which queue the contact). A value differs from what the
  sync last wrote only when someone changed it, so a page the sync wrote itself comes back
  without effect; a value still as written while the store moved on is the store's change
  on its way to Notion, not an edit. Whatever people changed, the sync's diff base
  (`notion_pages.written`) becomes what the page shows; when that now differs from the
  store on a value the pipeline owns, the contact is queued, so the next sync puts it back
  (and leaves the rest) without waiting for the contact's next change. Pages the store does
  not know (another contact, a page it did not create) are left to the import command.
- Contacts DB (the CRM): each changed contact page is recorded as seen (`notion_contacts`),
  which is where the sync reads a Booking Status set to Completed or No-Show by hand. The
  first look reads the whole CRM, then only what changes: from then on an address the CRM
  did not show is known to be absent, and the sync stops looking signups up. A CRM page
  that appears for a contact of the store, or one edited by hand away from what the
  pipeline owns (score, segment, campaign and booking status), queues the contact, so the
  sync fills it in or puts it back.
- Templates DB: changed templates are copied into the store, where send runs read them. A
  page emptied or renamed gives up its template; the whole database is then read again,
  as it is every `TEMPLATE_SWEEP` (a page moved to the trash is no longer returned by a
  query, so only a whole read notices it): the shipped template applies again.

Several campaigns (`apply_notion_edits_all`): each campaign's Email Sequence pages are
read on a cursor of their own (`edits:Email Sequence DB:<slug>`; an older store's single
cursor is taken over by the campaign it was for); the CRM and the Templates DB, shared,
are read once, and a CRM change queues the person in every campaign whose values on that
page it affects.

Cost: the databases' schema comes from the store (`load_schema`), then one query per
database (100 pages a request) of what was edited since its cursor. Nothing changed: one
request per database. Each cursor is saved once its changes are applied: a tick that fails
half way is read again in full by the next one, and applying twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from xmas_pipeline.adapters.notion.edits import EditCursor, changed_pages, edited_at
from xmas_pipeline.adapters.notion.mirror import (
    comparable,
    contact_changes,
    differences,
    same,
    sequence_values,
)
from xmas_pipeline.adapters.notion.pages import NotionPages
from xmas_pipeline.adapters.notion.props import parse_datetime
from xmas_pipeline.adapters.notion.schema import TemplateProperties
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.notion.templates import (
    latest_by_name,
    template_of,
    watch_templates,
)
from xmas_pipeline.adapters.notion.workspace import CONTACTS, SEQUENCES, TEMPLATES, ContactPage
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import ContactPageRecord, NotionTemplate
from xmas_pipeline.services.notion_sync import CONTACTS_COMPLETE, load_schema

TEMPLATES_SWEPT = "edits:templates:swept_at"
TEMPLATE_SWEEP = timedelta(minutes=5)  # a template moved to the trash is dropped by then

Page = dict[str, Any]


def cursor_state(role: str) -> str:
    """The `notion_state` name of a database's cursor."""
    return f"edits:{role}"


@dataclass
class EditsReport:
    pages: int = 0  # pages read that had changed since they were last applied
    paused: int = 0
    unpaused: int = 0
    unsubscribed: int = 0
    hand_edits: int = 0  # Email Sequence pages whose edits the sync's diff base now holds
    put_back: int = 0  # contacts queued because a hand edit changed a value the store owns
    not_ours: int = 0  # pages of contacts or pages the store does not know: left alone
    contacts: int = 0  # CRM contact pages recorded
    new_contacts: int = 0  # of which new to a contact of the store (queued for the sync)
    templates: int = 0  # templates stored (new or changed)
    templates_dropped: int = 0  # templates given back to the shipped ones
    requests: int = 0  # HTTP requests to Notion, retries included

    def summary(self) -> str:
        counts = [
            (self.paused, "paused"),
            (self.unpaused, "unpaused"),
            (self.unsubscribed, "unsubscribed by hand"),
            (self.hand_edits, "hand-edited pages noted"),
            (self.put_back, "queued to put the pipeline's values back"),
            (self.contacts, "CRM contacts"),
            (self.new_contacts, "new CRM contacts queued"),
            (self.templates, "templates"),
            (self.templates_dropped, "templates dropped"),
            (self.not_ours, "pages not the store's"),
        ]
        said = ", ".join(f"{n} {label}" for n, label in counts if n) or "nothing changed"
        return f"{said} ({self.pages} changed pages read; {self.requests} Notion requests)"


def apply_notion_edits(
    *,
    store: SqlStore,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    templates_db_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> EditsReport:
    """Read what changed in each database since its cursor and apply it (see above);
    `now` is the clock of the cursors (Notion's, as near as this host knows it).
    Raises `NotionCallError` when Notion fails: the cursors of databases not yet applied
    stay where they were."""
    return apply_notion_edits_all(
        store=store,
        pages=pages,
        notion=notion,
        campaigns=[campaign],
        templates_db_id=templates_db_id,
        now=now,
    )


def apply_notion_edits_all(
    *,
    store: SqlStore,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaigns: Sequence[Campaign],
    templates_db_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> EditsReport:
    """`apply_notion_edits` for several campaigns in one tick: each campaign's Email
    Sequence pages (a cursor each), then the shared CRM and Templates DB read once, a CRM
    change queueing the contact in every campaign it concerns. One report for all."""
    report = EditsReport()
    start = notion.api.requests_sent
    try:
        if templates_db_id:
            watch_templates(notion, templates_db_id)
        for campaign in campaigns:
            load_schema(notion, pages, campaign)
        for campaign in campaigns:
            _sequence_edits(store, pages, notion, campaign, report, now)
        _contact_edits(store, pages, notion, campaigns, report, now)
        if templates_db_id:
            _template_edits(pages, notion, report, now)
    finally:
        report.requests = notion.api.requests_sent - start
    return report


class _Poll:
    """One database's cursor and what its query returned: the pages edited since the
    cursor, or (`whole`, or nothing read before) every page."""

    def __init__(
        self,
        pages: SqlNotionPages,
        notion: NotionPages,
        role: str,
        condition: dict[str, Any] | None = None,
        scope: str = "",
        whole: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        state: str = "",
    ) -> None:
        self.store = pages
        self.role = role
        self.state = state or cursor_state(role)
        self.notion = notion
        self.condition = condition
        self.source_id = notion.source(role).id
        scoped = f"{notion.database_ids[role]}{scope}"
        saved = pages.state(self.state)
        if saved is None and self.state != cursor_state(role):
            # A store from before campaigns kept one cursor per database; it is this
            # campaign's when its scope says so (`loads` ignores it otherwise).
            saved = pages.state(cursor_state(role))
        self.cursor = EditCursor.loads(saved, scoped)
        self.first = self.cursor.since is None  # never read: this read is the whole database
        self.whole = whole or self.first
        since = None if self.whole else self.cursor.since
        self.read_at = now()  # before the query: an edit made during it is read next time
        self.read: list[Page] = changed_pages(notion.api, self.source_id, since, condition)

    def fresh(self) -> list[Page]:
        """The pages edited since the cursor that were not applied as they are now."""
        since = self.cursor.since
        recent = [p for p in self.read if since is None or edited_at(p) >= since]
        return self.cursor.fresh(recent)

    def read_whole(self) -> list[Page]:
        """Every page now (after an incremental read), remembered with the rest."""
        everything = changed_pages(self.notion.api, self.source_id, None, self.condition)
        self.read += everything
        self.whole = True
        return everything

    def save(self) -> None:
        """Called once what was read is applied."""
        after = self.cursor.advance(self.read, self.read_at)
        if after != self.cursor:
            self.store.set_state(self.state, after.dumps())


# -- Email Sequence DB ---------------------------------------------------------------------


def _sequence_edits(
    store: SqlStore,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaign: Campaign,
    report: EditsReport,
    now: Callable[[], datetime],
) -> None:
    condition = notion.campaign_condition(campaign)
    # One cursor per campaign: each campaign's pages are read on their own.
    poll = _Poll(
        pages,
        notion,
        SEQUENCES,
        condition,
        f"|{campaign.notion_select}",
        now=now,
        state=f"{cursor_state(SEQUENCES)}:{campaign.slug}",
    )
    fresh = poll.fresh()
    report.pages += len(fresh)
    rows = [row for row in (notion.to_row(page) for page in fresh) if row is not None]
    keys = [row.contact_key for row in rows]
    snaps = store.contact_snapshots(campaign, keys)
    records = pages.sequence_pages(campaign, keys)
    p = notion.schema.sequences
    put_back: list[str] = []
    for row in rows:
        key, seen = row.contact_key, row.values
        snap, record = snaps.get(key), records.get(key)
        if snap is None or record is None or record.page_id != row.page_id:
            report.not_ours += 1
            continue
        written = record.written

        def edited(
            name: str, seen: dict[str, Any] = seen, written: dict[str, Any] = written
        ) -> bool:
            # A checkbox: unset and unticked are alike.
            return name in seen and bool(seen[name]) != bool(written.get(name))

        # The store first, the diff base after: a tick that dies in between is applied
        # again by the next one, not lost.
        paused = bool(seen.get(p.paused))
        if edited(p.paused) and paused != snap.paused:
            store.set_contact_flags(campaign, key, paused=paused)
            snap = replace(snap, paused=paused)
            if paused:
                report.paused += 1
            else:
                report.unpaused += 1
        if edited(p.unsubscribed) and seen.get(p.unsubscribed) and not snap.unsubscribed:
            store.set_contact_flags(campaign, key, unsubscribed=True)  # never undone
            snap = replace(snap, unsubscribed=True)
            report.unsubscribed += 1
        title = notion.sequence_title
        wanted = sequence_values(notion.schema, campaign, snap, title)
        names = set(wanted) | set(written)
        shown = {name: comparable(seen[name]) for name in names if name in seen}
        if all(same(written.get(name), value) for name, value in shown.items()):
            continue  # as the sync left it (its own write, read back)
        observed = {**written, **shown}
        # Left as it is when the sync wrote the page meanwhile: it knows better.
        if not pages.observe_sequence_page(campaign, key, row.page_id, written, observed):
            continue
        report.hand_edits += 1
        # A value the pipeline owns no longer says what the store does: the next sync puts
        # it back (what it would write is what differs; the title is people's to rename).
        if differences(observed, {k: v for k, v in wanted.items() if k != title}):
            put_back.append(key)
    pages.requeue(campaign, put_back)
    report.put_back += len(put_back)
    poll.save()


# -- Contacts DB (the CRM) -----------------------------------------------------------------


def _contact_edits(
    store: SqlStore,
    pages: SqlNotionPages,
    notion: NotionSync,
    campaigns: Sequence[Campaign],
    report: EditsReport,
    now: Callable[[], datetime],
) -> None:
    poll = _Poll(pages, notion, CONTACTS, now=now)
    fresh = poll.fresh()
    report.pages += len(fresh)
    candidates: dict[str, list[tuple[Page, ContactPage]]] = {}
    for page in fresh:
        known = notion.contact_of(page)
        if known is not None:
            candidates.setdefault(known[0], []).append((page, known[1]))
    records = pages.contact_pages(candidates)
    changed: dict[str, ContactPageRecord] = {}
    appeared: list[str] = []
    for key, found in candidates.items():
        record = records.get(key)
        chosen = _contact_page(found, record)
        if chosen is None:
            report.not_ours += 1  # a second page with an address the CRM already has
            continue
        if record is not None and record.page_id == chosen.page_id:
            names = set(record.values) | set(chosen.values)
            if all(same(record.values.get(n), chosen.values.get(n)) for n in names):
                continue  # as the sync left it (its own write, read back)
        else:
            appeared.append(key)
        changed[key] = ContactPageRecord(chosen.page_id, chosen.values)
    pages.save_contact_pages(changed)
    report.contacts += len(changed)
    # A contact of the store with a CRM page it did not know: the sync fills the page in.
    # One whose page now differs (a hand edit) on what the pipeline owns: it puts it back.
    # The CRM page is shared: each campaign the person is in checks what it owns there.
    owners = pages.booking_owners(changed) if changed else {}
    for campaign in campaigns:
        snaps = store.contact_snapshots(campaign, list(changed))
        queue = [
            key
            for key, snap in snaps.items()
            if contact_changes(
                notion.schema,
                campaign,
                snap,
                changed[key].values,
                owns_booking=owners.get(key, campaign.slug) == campaign.slug,
            )
        ]
        pages.requeue(campaign, queue)
        report.new_contacts += sum(key in appeared for key in queue)
        report.put_back += sum(key not in appeared for key in queue)
    if poll.first and pages.state(CONTACTS_COMPLETE) != "yes":
        pages.set_state(CONTACTS_COMPLETE, "yes")  # every CRM page is known from now on
    poll.save()


def _contact_page(
    found: list[tuple[Page, ContactPage]], record: ContactPageRecord | None
) -> ContactPage | None:
    """The page to keep for one address: the one already known, else the oldest; None when
    only other pages than the known one were read."""
    if record is not None and record.page_id:
        mine = [contact for _, contact in found if contact.page_id == record.page_id]
        return mine[-1] if mine else None
    oldest = min(found, key=lambda item: (item[0].get("created_time") or "", item[1].page_id))
    # The latest read of that page (one page may come back twice in one read).
    return [contact for _, contact in found if contact.page_id == oldest[1].page_id][-1]


# -- Templates DB --------------------------------------------------------------------------


def _template_edits(
    pages: SqlNotionPages, notion: NotionSync, report: EditsReport, now: Callable[[], datetime]
) -> None:
    props = notion.schema.templates
    swept = _moment(pages.state(TEMPLATES_SWEPT))
    # Now and then the whole database instead of what changed: the same one request.
    sweep = swept is None or now() - swept >= TEMPLATE_SWEEP
    poll = _Poll(pages, notion, TEMPLATES, whole=sweep, now=now)
    stored = {t.key: t for t in pages.all_notion_templates()}
    fresh = poll.fresh()
    report.pages += len(fresh)
    everything = poll.read
    if not poll.whole:
        saved, lost = _changed_templates(fresh, stored, props)
        if not lost:
            pages.save_notion_templates(saved)
            report.templates += len(saved)
            poll.save()
            return
        everything = poll.read_whole()  # which other page, if any, now has that name?
    found = latest_by_name(t for t in (template_of(p, props) for p in everything) if t)
    saved = [t for key, t in found.items() if not _same_template(stored.get(key), t)]
    dropped = [key for key in stored if key not in found]
    pages.save_notion_templates(saved)
    pages.drop_notion_templates(dropped)
    report.templates += len(saved)
    report.templates_dropped += len(dropped)
    pages.set_state(TEMPLATES_SWEPT, poll.read_at.isoformat())
    poll.save()


def _changed_templates(
    fresh: list[Page], stored: dict[str, NotionTemplate], props: TemplateProperties
) -> tuple[list[NotionTemplate], bool]:
    """The templates to store from the pages edited (`stored` by `NotionTemplate.key`);
    True when a template lost its page (emptied, renamed, moved to another campaign): the
    whole database must then be read again."""
    by_page = {t.page_id: t for t in stored.values()}
    chosen: dict[str, NotionTemplate] = {}
    lost = False
    for page in fresh:
        template = template_of(page, props)
        old = by_page.get(str(page["id"]))
        if old is not None and (template is None or template.key != old.key):
            lost = True
        if template is None:
            continue
        current = chosen.get(template.key) or stored.get(template.key)
        later = current is not None and (current.edited_at, current.page_id) > (
            template.edited_at,
            template.page_id,
        )
        if current is not None and current.page_id != template.page_id and later:
            continue  # another page of that name was edited later
        if not _same_template(current, template):
            chosen[template.key] = template
    return list(chosen.values()), lost


def _same_template(a: NotionTemplate | None, b: NotionTemplate) -> bool:
    return a is not None and (a.page_id, a.subject, a.html) == (b.page_id, b.subject, b.html)


def _moment(text: str | None) -> datetime | None:
    try:
        return parse_datetime(text)
    except ValueError:
        return None
