"""The Notion databases the store works on: their data sources, property schema and
the shape of values and filters written to them (requests paced and retried by
`adapters.notion.http.NotionApi`).

Request budget: `prepare` costs 2 requests per database (database -> data source id,
then its schema), once per store object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from xmas_pipeline.adapters.notion.http import DataSource, NotionApi, fetch_data_source
from xmas_pipeline.adapters.notion.props import encode, iso_datetime
from xmas_pipeline.adapters.notion.schema import (
    NotionSchema,
    PropSpec,
    analytics_specs,
    check_properties,
    contact_specs,
    sequence_specs,
    template_specs,
)
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import StoreSchemaError

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


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class SequenceRow:
    """One Email Sequence page as last read or written by this store."""

    page_id: str
    contact_key: str
    values: dict[str, Any]  # property name -> decoded value
    created_time: str = ""


@dataclass
class ContactPage:
    page_id: str
    values: dict[str, Any]


def cached_value(value: Any) -> Any:
    """A written value as a later read would decode it (dates as ISO strings)."""
    if isinstance(value, datetime):
        return iso_datetime(value)
    return value


class NotionWorkspace:
    """The databases, their schema (looked up once) and the caches the store keeps."""

    def __init__(
        self,
        token: str,
        contacts_db_id: str,
        sequences_db_id: str,
        *,
        ledger: SqlStore,
        base_url: str = "https://api.notion.com",
        schema: NotionSchema | None = None,
        analytics_db_id: str | None = None,
        rate_per_s: float = 3.0,
        max_attempts: int = 6,
        timeout_s: float = 30,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schema = schema or NotionSchema()
        # Bookings, reminder outcomes and email events live in this SQL store; Notion gets
        # what people read (see `adapters.notion.bookings`).
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
        self._rows: dict[str, dict[str, SequenceRow]] = {}  # campaign slug -> contact key -> row
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

    def encode_values(self, role: str, values: dict[str, Any]) -> dict[str, Any]:
        source = self._sources[role]
        return {name: encode(source.type_of(name), value) for name, value in values.items()}

    def condition(self, role: str, name: str, op: str, value: Any) -> dict[str, Any]:
        # The condition's key is the property's type (email, rich_text, title, select...).
        return {"property": name, self._sources[role].type_of(name): {op: value}}

    def campaign_condition(self, campaign: Campaign) -> dict[str, Any]:
        return self.condition(
            SEQUENCES, self.schema.sequences.campaign, "equals", campaign.notion_select
        )

    def remember_source(self, role: str, source: DataSource) -> None:
        """A schema just fetched or changed (by `setup_notion`); checks are redone."""
        with self._lock:
            if role in self.database_ids:
                self._sources[role] = source
            self._prepared.clear()

    def require(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self._sources[SEQUENCES].properties]
        if missing:
            raise StoreSchemaError({SEQUENCES: missing})

    @staticmethod
    def changes(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        """The values of `wanted` that differ from `current` (blank and None are alike)."""

        def same(a: Any, b: Any) -> bool:
            if a is None or b is None:
                return (a in (None, "")) and (b in (None, ""))
            return a == b

        return {name: value for name, value in wanted.items() if not same(current.get(name), value)}
