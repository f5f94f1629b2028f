"""The Notion fake with a ledger: every request it answers, sorted by what it was for.

Shared by `bench_notion.py` and `bench_notion_e2e.py`, which attribute requests per
signup and per email from it. The fake's own counters know routes only; this ledger also
knows which database a request touched (Email Sequence, the CRM's contacts, the send
log) and whether a query looked contacts up (a filter on the address) or polled a
database (anything else, e.g. the edits sensor's "edited since" query).

Kinds: `schema <db>` (GET database / data source), `setup <db>` (PATCH data source),
`create <db>`, `update <db>`, `read <db>` (GET page), `lookup <db>`, `poll <db>`.
A reply of 429 is also tallied under `429`, whatever its kind. `log` keeps every request
as (seconds since the fake started or its counts were reset, kind, status), for timelines.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from email.message import Message
from typing import Any

from xmas_pipeline_tests.fakes.notion_api import FakeNotion

_PAGE = re.compile(r"^/v1/pages/([^/?]+)")
_SOURCE = re.compile(r"^/v1/data_sources/([^/?]+)")
_DATABASE = re.compile(r"^/v1/databases/([^/?]+)")
# The names the address property has in the BusOS databases (CRM: "email").
ADDRESS_PROPERTIES = {"email", "Email"}


def _compact(object_id: str) -> str:
    return object_id.replace("-", "").lower()


def _filters_on_address(spec: Any) -> bool:
    """True when a query filter is a lookup by address (possibly in an and/or)."""
    if not isinstance(spec, dict):
        return False
    for compound in ("and", "or"):
        if compound in spec:
            return any(_filters_on_address(part) for part in spec[compound] or [])
    return spec.get("property") in ADDRESS_PROPERTIES


class LedgerNotion(FakeNotion):
    """`FakeNotion` that also sorts each request it answers into `kinds`. Its own helpers
    are named `_ledger_*`: the fake's private methods must not be overridden."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kinds: Counter[str] = Counter()
        self.log: list[tuple[float, str, int]] = []
        self._started = time.monotonic()
        self._ledger_lock = threading.Lock()

    def handle(
        self, method: str, path: str, headers: Message, body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any], float]:
        # Classified before the request is applied: a create's page does not exist yet,
        # an update's page does.
        kind = self._ledger_kind(method, path.split("?", 1)[0], body)
        answer = super().handle(method, path, headers, body)
        with self._ledger_lock:
            self.kinds[kind] += 1
            if answer[0] == 429:
                self.kinds["429"] += 1
            self.log.append((time.monotonic() - self._started, kind, answer[0]))
        return answer

    def reset_counts(self) -> None:
        super().reset_counts()
        with self._ledger_lock:
            self.kinds.clear()
            self.log.clear()
            self._started = time.monotonic()

    def snapshot(self) -> tuple[dict[str, int], list[tuple[float, str, int]]]:
        """The kinds and the log as they are now (the fake keeps answering meanwhile)."""
        with self._ledger_lock:
            return dict(self.kinds), list(self.log)

    def kind_total(self, prefix: str) -> int:
        with self._ledger_lock:
            return sum(n for kind, n in self.kinds.items() if kind.startswith(prefix))

    # -- classification ----------------------------------------------------------------------

    def _ledger_database_title(self, database_id: str) -> str:
        with self._lock:
            database = self.databases.get(_compact(database_id))
            return str(database["title"]) if database else "?"

    def _ledger_source_title(self, source_id: str) -> str:
        with self._lock:
            source = self.data_sources.get(_compact(source_id))
            return str(source["title"]) if source else "?"

    def _ledger_page_title(self, page_id: str) -> str:
        with self._lock:
            page = self.pages.get(_compact(page_id))
            if page is None:
                return "?"
            source = self.data_sources.get(page["data_source"])
            return str(source["title"]) if source else "?"

    def _ledger_kind(self, method: str, path: str, body: bytes) -> str:
        database = _DATABASE.match(path)
        if method == "GET" and database:
            return f"schema {self._ledger_database_title(database.group(1))}"
        source = _SOURCE.match(path)
        if method == "GET" and source:
            return f"schema {self._ledger_source_title(source.group(1))}"
        if method == "PATCH" and source:
            return f"setup {self._ledger_source_title(source.group(1))}"
        payload = _json(body)
        if method == "POST" and path == "/v1/pages":
            parent = payload.get("parent") or {}
            return f"create {self._ledger_source_title(str(parent.get('data_source_id', '')))}"
        page = _PAGE.match(path)
        if page:
            verb = "update" if method == "PATCH" else "read"
            return f"{verb} {self._ledger_page_title(page.group(1))}"
        if method == "POST" and source and path.endswith("/query"):
            verb = "lookup" if _filters_on_address(payload.get("filter")) else "poll"
            return f"{verb} {self._ledger_source_title(source.group(1))}"
        return f"other {method} {path}"


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
