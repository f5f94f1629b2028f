"""`NotionSync`: the writes the sync makes, each one request (pages.create or
pages.update), paced and retried by `NotionApi`.

A create whose answer was lost may have happened: `create_sequence` is told when an
earlier attempt was started (the store records that before creating), and then looks the
page up first; the SDK call itself looks it up again when this attempt times out.
"""

from __future__ import annotations

from typing import Any

from xmas_pipeline.adapters.notion.pages import NotionPages
from xmas_pipeline.adapters.notion.props import iso_datetime
from xmas_pipeline.adapters.notion.workspace import ANALYTICS, CONTACTS, SEQUENCES
from xmas_pipeline.core.campaign import Campaign


class NotionSync(NotionPages):
    @property
    def sequence_title(self) -> str | None:
        return self.source(SEQUENCES).title

    @property
    def logs_messages(self) -> bool:
        return ANALYTICS in self.database_ids

    def create_sequence(
        self, campaign: Campaign, email: str, values: dict[str, Any], look_first: bool
    ) -> tuple[dict[str, Any], bool]:
        """The contact's page, created with `values`; (page, False) when it existed."""
        if look_first:
            found = self.find_sequence(campaign, email)
            if found is not None:
                return found, False
        page = self.api.create_page(
            self.source(SEQUENCES).id,
            self.encode_values(SEQUENCES, values),
            lambda: self.find_sequence(campaign, email),
        )
        return page, True

    def update_sequence(self, page_id: str, changes: dict[str, Any]) -> None:
        self.require(changes)
        self.api.update_page(page_id, self.encode_values(SEQUENCES, changes))

    def update_contact(self, page_id: str, changes: dict[str, Any]) -> None:
        self.api.update_page(page_id, self.encode_values(CONTACTS, changes))

    def find_sequence_pages(self, email: str) -> list[dict[str, Any]]:
        """Every Email Sequence page for this address, whatever its campaign (a person
        being forgotten: duplicates, and campaigns this deployment does not run, too)."""
        query = self.condition(SEQUENCES, self.schema.sequences.email, "equals", email)
        return self.api.query(self.source(SEQUENCES).id, query)

    def find_analytics_pages(self, email: str) -> list[dict[str, Any]]:
        """The Email Analytics pages logged for this address (none without that DB)."""
        if not self.logs_messages:
            return []
        condition = self.condition(ANALYTICS, self.schema.analytics.email, "equals", email)
        return self.api.query(self.source(ANALYTICS).id, condition)

    def trash_page(self, page_id: str) -> None:
        self.api.trash_page(page_id)

    def log_message(self, campaign: Campaign, row: dict[str, Any]) -> str:
        """One Email Analytics page for a message sent or failed; its page id. A create
        that timed out is looked up by message, status and time before it is repeated."""
        a = self.schema.analytics
        source = self.source(ANALYTICS)
        values: dict[str, Any] = {
            a.message_id: row["message_id"],
            a.email: row["contact_key"],
            a.campaign: campaign.notion_select,
            a.step: row["step_id"],
            a.status: row["status"],
            a.provider_id: row.get("provider_id") or "",
            a.error: row.get("error") or "",
            a.segment: row.get("segment") or "",
            a.due_at: row["due_at"],
            a.at: row["at"],
            a.idempotency_key: row.get("idempotency_key") or "",
        }
        if source.title and source.title not in values:
            values[source.title] = row["message_id"]

        def recover() -> dict[str, Any] | None:
            query = {
                "and": [
                    self.condition(ANALYTICS, a.message_id, "equals", row["message_id"]),
                    self.condition(ANALYTICS, a.status, "equals", row["status"]),
                    self.condition(ANALYTICS, a.at, "equals", iso_datetime(row["at"])),
                ]
            }
            pages = self.api.query(source.id, query)
            return pages[0] if pages else None

        page = self.api.create_page(source.id, self.encode_values(ANALYTICS, values), recover)
        return str(page["id"])
