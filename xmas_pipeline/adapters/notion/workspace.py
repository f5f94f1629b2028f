"""The Notion databases the sync works on: their data sources, property schema and the
shape of values and filters written to them (requests paced and retried by
`adapters.notion.http.NotionApi`).

Request budget: looking a database's schema up costs 2 requests (database -> data source
id, then its schema). The sync keeps what it found (`export_schema`, `import_schema`) in
the SQL store, so a run does not pay that again while the schema is fresh.
"""

from __future__ import annotations

import json
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
    status_property,
    template_specs,
)
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
    """The databases and their schema (looked up once, or taken from a cache)."""

    def __init__(
        self,
        token: str,
        contacts_db_id: str,
        sequences_db_id: str,
        *,
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
        self._prepared: set[tuple[str, int, int, str, str]] = set()
        self._lock = threading.RLock()

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
            return contact_specs(self.schema.contacts, campaign)
        if role == ANALYTICS:
            return analytics_specs(self.schema.analytics, campaign.notion_select)
        if role == TEMPLATES:
            return template_specs(self.schema.templates)
        raise KeyError(role)

    def prepare(self, campaign: Campaign) -> None:
        """Check both databases (and the analytics one) before anything is written."""
        key = (
            campaign.slug,
            len(campaign.steps),
            len(campaign.reminders),
            campaign.notion_select,
            self.status_property(campaign),
        )
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

    def export_schema(self) -> str:
        """The data sources looked up so far, as JSON (for `import_schema` in a later run)."""
        with self._lock:
            return json.dumps(
                {
                    role: {"database_id": s.database_id, "payload": s.payload}
                    for role, s in self._sources.items()
                },
                sort_keys=True,
            )

    def import_schema(self, text: str) -> bool:
        """Take data sources from `export_schema`'s JSON, for the databases this workspace
        is configured with (one configured differently since is ignored). True when every
        configured database was in it."""
        try:
            saved = json.loads(text)
        except ValueError:
            return False
        taken = {}
        for role, database_id in self.database_ids.items():
            entry = saved.get(role) if isinstance(saved, dict) else None
            if not isinstance(entry, dict) or entry.get("database_id") != database_id:
                continue
            taken[role] = DataSource(role, database_id, entry["payload"])
        with self._lock:
            self._sources.update(taken)
            self._prepared.clear()
        return len(taken) == len(self.database_ids)

    def forget_schema(self) -> None:
        """Look every schema up again (a write was refused: a property may have changed)."""
        with self._lock:
            self._sources.clear()
            self._prepared.clear()

    def encode_values(self, role: str, values: dict[str, Any]) -> dict[str, Any]:
        source = self._sources[role]
        return {name: encode(source.type_of(name), value) for name, value in values.items()}

    def condition(self, role: str, name: str, op: str, value: Any) -> dict[str, Any]:
        # The condition's key is the property's type (email, rich_text, title, select...).
        return {"property": name, self._sources[role].type_of(name): {op: value}}

    def status_property(self, campaign: Campaign) -> str:
        """The CRM select this campaign writes its status to (the CRM page is shared)."""
        return status_property(self.schema.contacts, campaign)

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
