"""New signups in Notion: a page per new contact in the Email Sequence DB, the CRM
contact's score, segment and campaign status.

Request budget: one query per 100 signups to find existing sequences (none when they are
already loaded), one per 100 to find their contacts, then per new signup at most one
contact update and one page create.
"""

from __future__ import annotations

from typing import Any

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.notion.pages import NotionSequencePages
from xmas_pipeline.adapters.notion.workspace import (
    CONTACTS,
    SEQUENCES,
    ContactPage,
    NotionStoreError,
    SequenceRow,
    cached_value,
)
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import UpsertReport
from xmas_pipeline.core.signup import Signup, SignupEvent


class NotionSignups(NotionSequencePages):
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

    def _update_contact(self, contact: ContactPage, signup: Signup) -> None:
        c = self.schema.contacts
        wanted: dict[str, Any] = {
            c.assessment_score: signup.assessment_score,
            c.segment: signup.segment.value,
        }
        # A contact already preparing for a booked call stays there.
        if contact.values.get(c.campaign_status) != c.precall_status:
            wanted[c.campaign_status] = c.nurture_status
        changes = self.changes(contact.values, wanted)
        if changes:
            self.api.update_page(contact.page_id, self.encode_values(CONTACTS, changes))
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

    def _create_sequence(self, campaign: Campaign, event: SignupEvent) -> SequenceRow:
        values = self._new_sequence_values(campaign, event)
        key = event.contact_key
        source = self.source(SEQUENCES)

        def recover() -> dict[str, Any] | None:
            # A create that timed out may have happened: look before creating again.
            p = self.schema.sequences
            query = {
                "and": [
                    self.campaign_condition(campaign),
                    self.condition(SEQUENCES, p.email, "equals", key),
                ]
            }
            pages = self.api.query(source.id, query)
            return min(pages, key=lambda pg: pg.get("created_time") or "") if pages else None

        page = self.api.create_page(source.id, self.encode_values(SEQUENCES, values), recover)
        row = self.to_row(page) or SequenceRow(
            page["id"], key, {n: cached_value(v) for n, v in values.items()}
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
            or self.changes(existing[e.contact_key].values, self._profile(e.signup))
        }
        contacts = self.find_contacts({k: str(v.email) for k, v in touching.items()})
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
        existing: dict[str, SequenceRow],
        contacts: dict[str, ContactPage],
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
        changes = self.changes(row.values, self._profile(event.signup))
        if not changes:
            return "unchanged"
        # A new assessment refreshes the profile; the sequence keeps its clock and progress.
        if contact is not None:
            self._update_contact(contact, event.signup)
        self.api.update_page(row.page_id, self.encode_values(SEQUENCES, changes))
        row.values.update(changes)
        return "updated"
