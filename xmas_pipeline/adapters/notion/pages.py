"""The Email Sequence pages as this store knows them: one row per contact, loaded with
one paginated query (100 pages a request) or looked up 100 addresses at a time, and kept
so that writing a sent date is exactly one `pages.update`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.workspace import (
    CONTACTS,
    FILTER_CHUNK,
    SEQUENCES,
    ContactPage,
    NotionWorkspace,
    SequenceRow,
    chunks,
    log,
)
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.signup import Signup, contact_key


class NotionSequencePages(NotionWorkspace):
    def to_row(self, page: dict[str, Any]) -> SequenceRow | None:
        values = page_values(page)
        email = str(values.get(self.schema.sequences.email) or "").strip()
        if not email:
            return None  # a hand-made row without an address: nothing to send to
        return SequenceRow(page["id"], contact_key(email), values, page.get("created_time") or "")

    def _index(self, pages: Iterable[dict[str, Any]]) -> dict[str, SequenceRow]:
        """Rows by contact; duplicates (a double create) fold into the oldest page."""
        grouped: dict[str, list[SequenceRow]] = {}
        for page in pages:
            row = self.to_row(page)
            if row is not None:
                grouped.setdefault(row.contact_key, []).append(row)
        rows: dict[str, SequenceRow] = {}
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

    def load_rows(self, campaign: Campaign) -> dict[str, SequenceRow]:
        pages = self.api.query(self.source(SEQUENCES).id, self.campaign_condition(campaign))
        rows = self._index(pages)
        with self._lock:
            self._rows[campaign.slug] = rows
            self._complete.add(campaign.slug)
        return rows

    def query_rows(self, campaign: Campaign, emails: list[str]) -> dict[str, SequenceRow]:
        """The sequences of these addresses (one query per 100), fresh from Notion."""
        p = self.schema.sequences
        found: list[dict[str, Any]] = []
        for chunk in chunks(sorted(set(emails)), FILTER_CHUNK):
            by_email = [self.condition(SEQUENCES, p.email, "equals", e) for e in chunk]
            either = by_email[0] if len(by_email) == 1 else {"or": by_email}
            query = {"and": [self.campaign_condition(campaign), either]}
            found.extend(self.api.query(self.source(SEQUENCES).id, query))
        rows = self._index(found)
        with self._lock:
            self._rows.setdefault(campaign.slug, {}).update(rows)
        return rows

    def _existing(self, campaign: Campaign, signups: dict[str, Signup]) -> dict[str, SequenceRow]:
        with self._lock:
            cached = dict(self._rows.get(campaign.slug) or {})
            complete = campaign.slug in self._complete
        if complete:
            return {k: cached[k] for k in signups if k in cached}
        unknown = [k for k in signups if k not in cached]
        emails = [e for k in unknown for e in {k, str(signups[k].email)}]
        if emails:
            cached.update(self.query_rows(campaign, emails))
        return {k: cached[k] for k in signups if k in cached}

    def row_for(self, campaign: Campaign, key: str) -> SequenceRow | None:
        """The contact's page: from this run's load, else one full load, else one lookup."""
        with self._lock:
            row = (self._rows.get(campaign.slug) or {}).get(key)
            complete = campaign.slug in self._complete
        if row is not None:
            return row
        if not complete:
            # Loading once costs 1 request per 100 rows; a lookup per email would cost 1 each.
            row = self.load_rows(campaign).get(key)
            if row is not None:
                return row
        return self.query_rows(campaign, [key]).get(key)

    def preload(self, campaign: Campaign, contact_keys: Iterable[str]) -> None:
        """Fetch just these contacts' pages (1 request per 100) ahead of `record_sent`, for a
        process that sends a few emails without having loaded all sequences."""
        self.prepare(campaign)
        keys = list(dict.fromkeys(contact_keys))
        with self._lock:
            cached = self._rows.get(campaign.slug) or {}
            keys = [k for k in keys if k not in cached]
        if keys:
            self.query_rows(campaign, keys)

    def all_rows(self, campaign: Campaign) -> dict[str, SequenceRow]:
        with self._lock:
            if campaign.slug in self._complete:
                return dict(self._rows[campaign.slug])
        return self.load_rows(campaign)

    def find_contacts(self, emails: dict[str, str]) -> dict[str, ContactPage]:
        """CRM contact pages by contact key; one query per 100 addresses, each asked as
        the key and as typed (a CRM may have kept its case)."""
        if not emails:
            return {}
        c = self.schema.contacts
        source = self.source(CONTACTS)
        wanted = sorted({e for key, email in emails.items() for e in (key, email) if e})
        found: dict[str, ContactPage] = {}
        for chunk in chunks(wanted, FILTER_CHUNK):
            conditions = [self.condition(CONTACTS, c.email, "equals", e) for e in chunk]
            query = conditions[0] if len(conditions) == 1 else {"or": conditions}
            for page in self.api.query(source.id, query):
                values = page_values(page)
                key = contact_key(str(values.get(c.email) or ""))
                if key in emails and key not in found:
                    found[key] = ContactPage(page["id"], values)
        return found
