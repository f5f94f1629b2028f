"""Reading pages: Email Sequence pages (one per contact and campaign) and CRM contacts,
found by address 100 at a time or read whole with one paginated query (100 a request)."""

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
from xmas_pipeline.core.signup import contact_key


class NotionPages(NotionWorkspace):
    def to_row(self, page: dict[str, Any]) -> SequenceRow | None:
        values = page_values(page)
        email = str(values.get(self.schema.sequences.email) or "").strip()
        if not email:
            return None  # a hand-made row without an address: nothing to send to
        return SequenceRow(page["id"], contact_key(email), values, page.get("created_time") or "")

    def index_rows(self, pages: Iterable[dict[str, Any]]) -> tuple[dict[str, SequenceRow], int]:
        """Rows by contact, and how many extra pages there were: duplicates of one contact
        (a double create by an older tool) fold into the oldest page, which gets every
        sent date any copy has, so no step is ever sent twice."""
        grouped: dict[str, list[SequenceRow]] = {}
        for page in pages:
            row = self.to_row(page)
            if row is not None:
                grouped.setdefault(row.contact_key, []).append(row)
        rows: dict[str, SequenceRow] = {}
        extra = 0
        for key, group in grouped.items():
            group.sort(key=lambda r: (r.created_time, r.page_id))
            keep = group[0]
            if len(group) > 1:
                extra += len(group) - 1
                log.warning("%d extra Email Sequence pages for one contact", len(group) - 1)
                for other in group[1:]:
                    for name, value in other.values.items():
                        if value and not keep.values.get(name):
                            keep.values[name] = value
            rows[key] = keep
        return rows, extra

    def sequence_pages(self, campaign: Campaign) -> list[dict[str, Any]]:
        """Every Email Sequence page of the campaign (1 request per 100)."""
        return self.api.query(self.source(SEQUENCES).id, self.campaign_condition(campaign))

    def find_sequence(self, campaign: Campaign, email: str) -> dict[str, Any] | None:
        """The contact's page (the oldest, if there are several), or None: one query."""
        query = {
            "and": [
                self.campaign_condition(campaign),
                self.condition(SEQUENCES, self.schema.sequences.email, "equals", email),
            ]
        }
        pages = self.api.query(self.source(SEQUENCES).id, query)
        if not pages:
            return None
        return min(pages, key=lambda pg: (pg.get("created_time") or "", pg["id"]))

    def contact_of(self, page: dict[str, Any]) -> tuple[str, ContactPage] | None:
        values = page_values(page)
        key = contact_key(str(values.get(self.schema.contacts.email) or ""))
        return (key, ContactPage(page["id"], values)) if key else None

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
                known = self.contact_of(page)
                if known is not None and known[0] in emails and known[0] not in found:
                    found[known[0]] = known[1]
        return found

    def all_contacts(self) -> dict[str, ContactPage]:
        """Every CRM contact page by contact key (1 request per 100); the oldest of two
        pages with one address wins."""
        found: dict[str, ContactPage] = {}
        oldest_first = [{"timestamp": "created_time", "direction": "ascending"}]
        pages = self.api.query(self.source(CONTACTS).id, sorts=oldest_first)
        for page in pages:
            known = self.contact_of(page)
            if known is not None:
                found.setdefault(*known)
        return found
