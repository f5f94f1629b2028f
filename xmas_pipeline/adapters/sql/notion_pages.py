"""What the SQL store knows of the Notion workspace (`core.ports.NotionPageMap`).

- each contact's Email Sequence page and the values last written to it (or read from it),
  so a sync sends only what differs, and a create that may have happened is looked up
  before it is tried again (`start_create` is committed before the create);
- the CRM's contact pages by address, with their values as last seen (an empty page id
  records that the CRM has no such contact);
- the email templates kept in Notion, as last read, each with the campaign it is for;
- which campaign owns a person's booking (the CRM page is shared by every campaign);
- small named values: cursors, the databases' schema, flags (`state`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.notion_queue import mark_dirty
from xmas_pipeline.adapters.sql.tables import (
    bookings,
    messages,
    notion_contacts,
    notion_logged,
    notion_pages,
    notion_state,
    notion_templates,
    outcomes,
)
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import ContactPageRecord, NotionTemplate, SequencePageRecord

CHUNK = 500


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


class SqlNotionPages(SqlDatabase):
    # -- Email Sequence pages ---------------------------------------------------------------

    def sequence_pages(
        self, campaign: Campaign, keys: Iterable[str]
    ) -> dict[str, SequencePageRecord]:
        self.prepare()
        wanted = sorted(set(keys))
        found: dict[str, SequencePageRecord] = {}
        p = notion_pages.c
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                for row in conn.execute(
                    sa.select(p.contact_key, p.page_id, p.written, p.create_started_at).where(
                        p.campaign == campaign.slug, p.contact_key.in_(chunk)
                    )
                ):
                    found[row[0]] = SequencePageRecord(
                        page_id=row[1],
                        written=json.loads(row[2]),
                        create_started=row[3] is not None,
                    )
        return found

    def all_sequence_page_ids(self, campaign: Campaign) -> dict[str, str]:
        """Page id -> contact key, for every page this store knows."""
        self.prepare()
        p = notion_pages.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(p.page_id, p.contact_key).where(
                    p.campaign == campaign.slug, p.page_id != ""
                )
            ).all()
        return {page_id: key for page_id, key in rows}

    def start_create(self, campaign: Campaign, key: str) -> None:
        """Committed before a page is created: if the create's answer is lost (a crash, a
        timeout), the next attempt looks for the page before creating one."""
        self.prepare()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            stmt = upsert(conn, notion_pages).values(
                campaign=campaign.slug,
                contact_key=key,
                page_id="",
                written="{}",
                create_started_at=now,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[notion_pages.c.campaign, notion_pages.c.contact_key],
                set_={"create_started_at": now},
            )
            conn.execute(stmt)

    def save_sequence_page(
        self, campaign: Campaign, key: str, page_id: str, written: Mapping[str, Any]
    ) -> None:
        self.prepare()
        now = datetime.now(UTC)
        values = {
            "page_id": page_id,
            "written": json.dumps(dict(written), sort_keys=True, default=str),
            "create_started_at": None,
            "synced_at": now,
        }
        with self.engine.begin() as conn:
            stmt = upsert(conn, notion_pages).values(
                campaign=campaign.slug, contact_key=key, **values
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[notion_pages.c.campaign, notion_pages.c.contact_key], set_=values
            )
            conn.execute(stmt)

    def forget_sequence_page(self, campaign: Campaign, key: str) -> None:
        """The page is gone from Notion (deleted by someone): the next sync makes a new one."""
        self.prepare()
        p = notion_pages.c
        with self.engine.begin() as conn:
            conn.execute(
                notion_pages.delete().where(p.campaign == campaign.slug, p.contact_key == key)
            )

    # -- CRM contacts -------------------------------------------------------------------------

    def contact_pages(self, keys: Iterable[str]) -> dict[str, ContactPageRecord]:
        """What is known of these contacts' CRM pages (a key never looked up is left out)."""
        self.prepare()
        found: dict[str, ContactPageRecord] = {}
        c = notion_contacts.c
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys))):
                for key, page_id, values in conn.execute(
                    sa.select(c.contact_key, c.page_id, c["values"]).where(c.contact_key.in_(chunk))
                ):
                    found[key] = ContactPageRecord(page_id=page_id, values=json.loads(values))
        return found

    def save_contact_pages(self, records: Mapping[str, ContactPageRecord]) -> None:
        if not records:
            return
        self.prepare()
        now = datetime.now(UTC)
        rows = [
            {
                "contact_key": key,
                "page_id": record.page_id,
                "values": json.dumps(record.values, sort_keys=True, default=str),
                "seen_at": now,
            }
            for key, record in sorted(records.items())
        ]
        with self.engine.begin() as conn:
            stmt = upsert(conn, notion_contacts).values(rows)
            stmt = stmt.on_conflict_do_update(
                index_elements=[notion_contacts.c.contact_key],
                set_={
                    "page_id": stmt.excluded.page_id,
                    "values": stmt.excluded["values"],
                    "seen_at": stmt.excluded.seen_at,
                },
            )
            conn.execute(stmt)

    # -- templates ----------------------------------------------------------------------------

    def all_notion_templates(self) -> list[NotionTemplate]:
        """Every template row, whichever campaign it is for (`services.notion_edits`)."""
        self.prepare()
        t = notion_templates.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notion_templates).order_by(t.edited_at, t.name))
            return [
                NotionTemplate(
                    # An older store's rows have no campaign: the key is the name.
                    r.name.split(",", 1)[1] if r.campaign else r.name,
                    r.page_id,
                    r.subject,
                    r.html,
                    utc(r.edited_at),
                    r.campaign,
                )
                for r in rows
            ]

    def notion_templates(
        self, campaign: Campaign | None = None, *, is_default: bool = True
    ) -> list[NotionTemplate]:
        """The templates a send of `campaign` uses: the pages naming its Campaign select,
        and, for the deployment's default campaign only (`is_default`), the pages naming
        none; of two with one name, the one naming the campaign wins. Without a campaign:
        the pages naming none (what a store before campaigns held)."""
        rows = self.all_notion_templates()
        if campaign is None:
            return [t for t in rows if not t.campaign]
        chosen: dict[str, NotionTemplate] = {}
        if is_default:
            chosen.update((t.name, t) for t in rows if not t.campaign)
        chosen.update((t.name, t) for t in rows if t.campaign == campaign.notion_select)
        return sorted(chosen.values(), key=lambda t: (t.edited_at, t.name))

    def save_notion_templates(self, templates: Iterable[NotionTemplate]) -> None:
        self.prepare()
        rows = [
            {
                "name": t.key,
                "page_id": t.page_id,
                "subject": t.subject,
                "html": t.html,
                "edited_at": utc(t.edited_at),
                "campaign": t.campaign,
            }
            for t in templates
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            stmt = upsert(conn, notion_templates).values(rows)
            stmt = stmt.on_conflict_do_update(
                index_elements=[notion_templates.c.name],
                set_={
                    name: stmt.excluded[name]
                    for name in ("page_id", "subject", "html", "edited_at", "campaign")
                },
            )
            conn.execute(stmt)

    def drop_notion_templates(self, keys: Iterable[str]) -> None:
        """Drop rows by `NotionTemplate.key` (the name, for a page naming no campaign)."""
        self.prepare()
        wanted = sorted(set(keys))
        if not wanted:
            return
        with self.engine.begin() as conn:
            conn.execute(notion_templates.delete().where(notion_templates.c.name.in_(wanted)))

    # -- bookings across campaigns -------------------------------------------------------------

    def booking_owners(self, keys: Iterable[str]) -> dict[str, str]:
        """Contact key -> the slug of the campaign that owns the person's booking: the one
        whose booking of them changed last (then the lesser slug, so every sync agrees).
        Only that campaign's sync writes the shared CRM page's booking fields. A contact
        with no booking in any campaign is left out."""
        self.prepare()
        b = bookings.c
        owners: dict[str, tuple[datetime, str]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys))):
                for key, slug, at in conn.execute(
                    sa.select(b.contact_key, b.campaign, sa.func.max(b.updated_at))
                    .where(b.contact_key.in_(chunk))
                    .group_by(b.contact_key, b.campaign)
                ):
                    moment = utc(at)
                    held = owners.get(key)
                    if held is None or (moment, held[1]) > (held[0], slug):
                        owners[key] = (moment, slug)
        return {key: slug for key, (_, slug) in owners.items()}

    # -- named values -------------------------------------------------------------------------

    def state(self, name: str) -> str | None:
        self.prepare()
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(notion_state.c.value).where(notion_state.c.name == name)
            ).scalar_one_or_none()

    def set_state(self, name: str, value: str) -> None:
        self.prepare()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            stmt = upsert(conn, notion_state).values(name=name, value=value, updated_at=now)
            stmt = stmt.on_conflict_do_update(
                index_elements=[notion_state.c.name], set_={"value": value, "updated_at": now}
            )
            conn.execute(stmt)

    # -- the optional send log (Email Analytics DB) --------------------------------------------

    def unlogged_messages(self, campaign: Campaign, limit: int = 100) -> list[dict[str, Any]]:
        """Sends and failures not yet written to the send log, oldest first."""
        self.prepare()
        logged = sa.select(notion_logged.c.message_key).where(
            notion_logged.c.campaign == campaign.slug
        )
        m, o = messages.c, outcomes.c
        with self.engine.connect() as conn:
            sent = conn.execute(
                sa.select(
                    m.idempotency_key.label("log_key"),
                    m.message_id,
                    m.contact_key,
                    m.step_id,
                    m.segment,
                    m.due_at,
                    m.sent_at.label("at"),
                    m.provider_id,
                    m.idempotency_key,
                )
                .where(m.campaign == campaign.slug, m.idempotency_key.not_in(logged))
                .order_by(m.sent_at)
                .limit(limit)
            ).mappings()
            rows = [{**r, "status": "sent", "error": ""} for r in sent]
            failed = conn.execute(
                sa.select(
                    (o.message_id + "#failed@" + sa.cast(o.attempts, sa.String)).label("log_key"),
                    o.message_id,
                    o.contact_key,
                    o.step_id,
                    o.segment,
                    o.due_at,
                    o.at,
                    o.reason.label("error"),
                )
                .where(
                    o.campaign == campaign.slug,
                    o.status == "failed",
                    (o.message_id + "#failed@" + sa.cast(o.attempts, sa.String)).not_in(logged),
                )
                .order_by(o.at)
                .limit(limit)
            ).mappings()
            rows += [
                {**r, "status": "failed", "provider_id": "", "idempotency_key": ""} for r in failed
            ]
        rows.sort(key=lambda r: utc(r["at"]))
        return rows[:limit]

    def mark_logged(self, campaign: Campaign, log_key: str, page_id: str) -> None:
        self.prepare()
        with self.engine.begin() as conn:
            conn.execute(
                upsert(conn, notion_logged)
                .values(
                    campaign=campaign.slug,
                    message_key=log_key,
                    page_id=page_id,
                    logged_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing()
            )

    # -- edits read back from Notion (`services.notion_edits`) ---------------------------------

    def observe_sequence_page(
        self,
        campaign: Campaign,
        key: str,
        page_id: str,
        before: Mapping[str, Any],
        observed: Mapping[str, Any],
    ) -> bool:
        """Make what the page was seen to hold the sync's diff base, unless the sync wrote
        the page in the meantime (its record is no longer `before`). True when stored."""
        self.prepare()
        p = notion_pages.c
        with self.engine.begin() as conn:
            done = conn.execute(
                notion_pages.update()
                .where(
                    p.campaign == campaign.slug,
                    p.contact_key == key,
                    p.page_id == page_id,
                    p.written == json.dumps(dict(before), sort_keys=True, default=str),
                )
                .values(written=json.dumps(dict(observed), sort_keys=True, default=str))
            ).rowcount
        return bool(done)

    def requeue(self, campaign: Campaign, keys: Iterable[str]) -> None:
        """Queue these contacts for the sync (a CRM page just appeared for them)."""
        self.prepare()
        with self.engine.begin() as conn:
            mark_dirty(conn, campaign.slug, keys, datetime.now(UTC))
