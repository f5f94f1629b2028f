"""An in-process fake of the Notion HTTP API (Notion-Version 2025-09-03), for tests and the
benchmark: a real HTTP server on 127.0.0.1 (ephemeral port) in a background thread.

Routes: GET /v1/databases/{id} (with `data_sources`), GET and PATCH /v1/data_sources/{id},
POST /v1/data_sources/{id}/query, POST /v1/pages, GET and PATCH /v1/pages/{id}.

What it enforces, answering with Notion's error body `{"object": "error", "status",
"code", "message", "request_id"}`:
- the bearer token (401 `unauthorized`) and the Notion-Version header (400 `missing_version`;
  another version is refused: this fake speaks 2025-09-03 only);
- unknown property names on writes ("X is not a property that exists.") and in filters
  ("Could not find property with name or id: X"), both 400 `validation_error`;
- property value types ("X is expected to be date."), numbers, booleans, ISO 8601 dates,
  rich_text pieces of at most 2,000 characters (UTF-16 units, as Notion counts) and at most
  100 pieces, select options (a new name creates the option, as Notion does; a status
  option must exist);
- `page_size` 1..100, cursors (`start_cursor`/`next_cursor`/`has_more`), filters nested at
  most two levels, and (a conservative stand-in; Notion documents none) at most
  `max_filter_conditions` conditions in one `and`/`or`;
- timestamp filters (`{"timestamp": "last_edited_time", "last_edited_time": {"after": ...}}`,
  the same for `created_time`; `equals`, `before`, `after`, `on_or_before`, `on_or_after`),
  alone or inside `and`/`or`. A page's `created_time` and `last_edited_time` are rounded
  down to the minute, as Notion's are, and every create or update sets `last_edited_time`
  from the fake's wall clock (`now`, which tests may freeze and move: `freeze`, `advance`);
- a rate limit (`rate_limit` requests/s, a token bucket allowing `burst`): 429
  `rate_limited` with an integer `Retry-After`;
- seeded fault injection (`FaultPlan`) and scripted faults (`inject`): 429, 500 (a write
  may or may not have been applied), 503, 529 `service_overload`, and `timeout` (the
  request is applied, then the reply is held back past the client's timeout).
It counts every request by method and route (`counts`), so tests and the benchmark can
compute requests per email.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

NOTION_VERSION = "2025-09-03"
BOT_USER = {"object": "user", "id": "00000000-0000-4000-8000-00000000b0b0"}
WRITABLE_TYPES = (
    "title",
    "rich_text",
    "number",
    "select",
    "status",
    "multi_select",
    "date",
    "checkbox",
    "email",
    "url",
    "phone_number",
)
TEXT_TYPES = ("title", "rich_text", "email", "url", "phone_number")
DEFAULT_ANNOTATIONS = {
    "bold": False,
    "italic": False,
    "strikethrough": False,
    "underline": False,
    "code": False,
    "color": "default",
}
FAULT_KINDS = ("429", "500", "503", "529", "timeout")

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/v1/databases/([^/]+)$"), "/v1/databases/{id}"),
    ("GET", re.compile(r"^/v1/data_sources/([^/]+)$"), "/v1/data_sources/{id}"),
    ("PATCH", re.compile(r"^/v1/data_sources/([^/]+)$"), "/v1/data_sources/{id}"),
    ("POST", re.compile(r"^/v1/data_sources/([^/]+)/query$"), "/v1/data_sources/{id}/query"),
    ("POST", re.compile(r"^/v1/pages$"), "/v1/pages"),
    ("GET", re.compile(r"^/v1/pages/([^/]+)$"), "/v1/pages/{id}"),
    ("PATCH", re.compile(r"^/v1/pages/([^/]+)$"), "/v1/pages/{id}"),
]
WRITE_ROUTES = {"PATCH /v1/data_sources/{id}", "POST /v1/pages", "PATCH /v1/pages/{id}"}


class NotionError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _invalid(message: str) -> NotionError:
    return NotionError(400, "validation_error", message)


def _failed(path: str, should: str, was: Any = None) -> NotionError:
    """Notion's body-validation message: "<path> should be <x>, instead was `<y>`."."""
    return _invalid(f"body failed validation: {path} should be {should}, instead was `{was}`.")


def _shown(value: Any) -> str:
    return json.dumps(value) if value is not None else "undefined"


def _compact(object_id: str) -> str:
    return object_id.replace("-", "").lower()


def _now_iso(minute: bool = False, moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    if minute:  # Notion's created_time / last_edited_time are rounded to the minute
        moment = moment.replace(second=0, microsecond=0)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_date(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class FaultPlan:
    """Random faults: each request fails with probability `rate`, kind drawn from `kinds`."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "529", "timeout")
    seed: int = 0
    retry_after_s: int = 1
    slow_s: float = 1.0  # how long a "timeout" reply is held back


@dataclass
class _Scripted:
    kind: str
    route: str | None
    retry_after_s: int | None
    applied: bool | None


class FakeNotion:
    """The fake server and its workspace. Use as a context manager: `with FakeNotion() as n`."""

    def __init__(
        self,
        token: str = "secret_fake_notion_token",
        *,
        rate_limit: float | None = None,
        burst: int = 3,
        faults: FaultPlan | None = None,
        max_filter_conditions: int = 100,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.token = token
        # The wall clock page timestamps come from (the rate limit uses `clock`).
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self._frozen: list[datetime] | None = None
        self.rate_limit = rate_limit
        self.burst = burst
        self.faults = faults or FaultPlan()
        self.max_filter_conditions = max_filter_conditions
        self._clock = clock
        self._lock = threading.RLock()
        self._rng = random.Random(self.faults.seed)
        self._scripted: deque[_Scripted] = deque()
        self._tokens = float(burst)
        self._refilled = clock()
        self._created = 0
        self._property_ids: set[str] = set()
        self.databases: dict[str, dict[str, Any]] = {}
        self.data_sources: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()  # requests by "METHOD /v1/route/{id}"
        self.statuses: Counter[int] = Counter()  # replies by HTTP status
        self.faults_injected: Counter[str] = Counter()
        self._server: LoopbackServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeNotion:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = LoopbackServer(Handler).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Notion server is not running")
        return self._server.base_url

    # -- counters and faults -----------------------------------------------------------------

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.statuses.clear()
            self.faults_injected.clear()

    def inject(
        self,
        kind: str,
        times: int = 1,
        route: str | None = None,
        retry_after_s: int | None = None,
        applied: bool | None = None,
    ) -> None:
        """Fail the next `times` requests (on `route`, e.g. "PATCH /v1/pages/{id}") with
        `kind`; `applied` says whether a failing write still takes effect (500 only)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            for _ in range(times):
                self._scripted.append(_Scripted(kind, route, retry_after_s, applied))

    def set_faults(self, plan: FaultPlan) -> None:
        with self._lock:
            self.faults = plan
            self._rng = random.Random(plan.seed)

    # -- the workspace, directly (not over HTTP, not counted) ---------------------------------

    def add_database(self, title: str, properties: dict[str, str | dict[str, Any]]) -> str:
        """A database with one data source. `properties`: name -> type, or -> {type: config}.
        A "Name" title is added when none is given (every Notion database has one)."""
        with self._lock:
            db_id = str(uuid.uuid4())
            ds_id = str(uuid.uuid4())
            schema: dict[str, Any] = {}
            specs = {n: ({t: {}} if isinstance(t, str) else t) for n, t in properties.items()}
            if not any(next(iter(s)) == "title" for s in specs.values()):
                specs = {"Name": {"title": {}}, **specs}
            self.databases[_compact(db_id)] = {"id": db_id, "title": title, "sources": [ds_id]}
            self.data_sources[_compact(ds_id)] = {
                "id": ds_id,
                "database_id": db_id,
                "title": title,
                "properties": schema,
            }
            for name, spec in specs.items():
                kind = next(iter(spec))
                schema[name] = self._new_property(name, kind, spec[kind] or {})
            return db_id

    def export_workspace(self) -> dict[str, Any]:
        """The workspace as JSON-ready data (databases, data sources, pages), for a fixture
        that outlives this server (`restore_workspace`)."""
        with self._lock:
            return json.loads(
                json.dumps(
                    {
                        "databases": self.databases,
                        "data_sources": self.data_sources,
                        "pages": self.pages,
                        "property_ids": sorted(self._property_ids),
                        "created": self._created,
                    }
                )
            )

    def restore_workspace(self, state: dict[str, Any]) -> None:
        """The workspace `export_workspace` gave, ids and all, replacing this one's."""
        with self._lock:
            self.databases = state["databases"]
            self.data_sources = state["data_sources"]
            self.pages = state["pages"]
            self._property_ids = set(state["property_ids"])
            self._created = int(state["created"])

    def data_source_id(self, database_id: str) -> str:
        with self._lock:
            return self.databases[_compact(database_id)]["sources"][0]

    def property_types(self, database_id: str) -> dict[str, str]:
        with self._lock:
            ds = self.data_sources[_compact(self.data_source_id(database_id))]
            return {name: prop["type"] for name, prop in ds["properties"].items()}

    def edit_properties(self, database_id: str, changes: dict[str, Any]) -> None:
        """Change the schema as a person would in Notion (same rules as PATCH data source)."""
        with self._lock:
            ds = self.data_sources[_compact(self.data_source_id(database_id))]
            self._update_data_source(ds, {"properties": changes})

    def add_row(self, database_id: str, values: dict[str, Any]) -> str:
        """A page from plain Python values (encoded by this fake for the property's type)."""
        with self._lock:
            ds = self.data_sources[_compact(self.data_source_id(database_id))]
            raw = {n: self._simple_value(ds, n, v) for n, v in values.items()}
            page = self._create_page({"parent": {"data_source_id": ds["id"]}, "properties": raw})
            return page["id"]

    def rows(self, database_id: str) -> list[dict[str, Any]]:
        """Every live page of the database as {property name: plain value}, plus "_id"."""
        with self._lock:
            ds_id = _compact(self.data_source_id(database_id))
            out = []
            for page in self.pages.values():
                if page["data_source"] == ds_id and not page["in_trash"]:
                    obj = self._page_object(page)
                    values = {n: _plain(v) for n, v in obj["properties"].items()}
                    values["_id"] = page["id"]
                    out.append(values)
            return out

    def raw_page(self, page_id: str) -> dict[str, Any]:
        with self._lock:
            return self._page_object(self.pages[_compact(page_id)])

    def edit_row(
        self, page_id: str, values: dict[str, Any], *, in_trash: bool | None = None
    ) -> None:
        """Change a page as a person would in Notion (plain values, as `add_row` takes
        them; `in_trash` moves it to or out of the trash): `last_edited_time` moves on."""
        with self._lock:
            page = self.pages[_compact(page_id)]
            ds = self.data_sources[page["data_source"]]
            raw = {n: self._simple_value(ds, n, v) for n, v in values.items()}
            payload: dict[str, Any] = {"properties": raw}
            if in_trash is not None:
                payload["in_trash"] = in_trash
            self._update_page(page, payload)

    def freeze(self, moment: datetime) -> None:
        """Stop the wall clock at `moment` (page timestamps; `advance` moves it on)."""
        frozen = [moment]
        self.now = lambda: frozen[0]
        self._frozen = frozen

    def advance(self, delta: timedelta) -> None:
        if self._frozen is None:
            raise RuntimeError("freeze the fake's clock before advancing it")
        self._frozen[0] += delta

    # -- request handling ----------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Message, body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any], float]:
        """One request -> (status, headers, JSON body, seconds to hold the reply back)."""
        path = path.split("?", 1)[0]
        route, object_id = self._route(method, path)
        key = f"{method} {route}"
        with self._lock:
            self.counts[key] += 1
        delay = 0.0
        try:
            self._check_headers(headers)
            self._check_rate()
            fault = self._draw_fault(key)
            if fault is not None:
                kind, retry_after, applied = fault
                with self._lock:
                    self.faults_injected[kind] += 1
                if kind == "timeout":
                    delay = self.faults.slow_s
                elif kind == "500":
                    if applied and key in WRITE_ROUTES:
                        self._dispatch(key, object_id, body)
                    raise NotionError(500, "internal_server_error", "Unexpected error occurred.")
                elif kind == "503":
                    raise NotionError(503, "service_unavailable", "Notion is unavailable.")
                else:
                    seconds = str(retry_after or self.faults.retry_after_s)
                    if kind == "429":
                        raise NotionError(
                            429,
                            "rate_limited",
                            "You have been rate limited. Please try again in a few minutes.",
                            {"Retry-After": seconds},
                        )
                    raise NotionError(
                        529,
                        "service_overload",
                        "The service is overloaded. Please try again later.",
                        {"Retry-After": seconds},
                    )
            status, payload = 200, self._dispatch(key, object_id, body)
            reply_headers: dict[str, str] = {}
        except NotionError as error:
            status = error.status
            reply_headers = error.headers
            payload = {
                "object": "error",
                "status": error.status,
                "code": error.code,
                "message": error.message,
                "request_id": str(uuid.uuid4()),
            }
        with self._lock:
            self.statuses[status] += 1
        return status, reply_headers, payload, delay

    def _route(self, method: str, path: str) -> tuple[str, str | None]:
        for verb, pattern, template in _ROUTES:
            match = pattern.match(path)
            if match and verb == method:
                return template, (match.group(1) if match.groups() else None)
        return path, None

    def _check_headers(self, headers: Message) -> None:
        if headers.get("Authorization") != f"Bearer {self.token}":
            raise NotionError(401, "unauthorized", "API token is invalid.")
        version = headers.get("Notion-Version")
        if not version:
            raise NotionError(
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be "
                "defined, instead was `undefined`.",
            )
        if version != NOTION_VERSION:
            raise _invalid(f"this fake speaks Notion-Version {NOTION_VERSION}, not {version}")

    def _check_rate(self) -> None:
        if self.rate_limit is None:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._refilled) * self.rate_limit
            )
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            wait = (1.0 - self._tokens) / self.rate_limit
        raise NotionError(
            429,
            "rate_limited",
            "You have been rate limited. Please try again in a few minutes.",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )

    def _draw_fault(self, key: str) -> tuple[str, int | None, bool] | None:
        with self._lock:
            for index, scripted in enumerate(self._scripted):
                if scripted.route is None or scripted.route == key:
                    del self._scripted[index]
                    applied = (
                        scripted.applied
                        if scripted.applied is not None
                        else self._rng.random() < 0.5
                    )
                    return scripted.kind, scripted.retry_after_s, applied
            plan = self.faults
            if plan.rate > 0 and self._rng.random() < plan.rate:
                kind = self._rng.choice(plan.kinds)
                return kind, None, self._rng.random() < 0.5
        return None

    def _dispatch(self, key: str, object_id: str | None, body: bytes) -> dict[str, Any]:
        payload = self._json(body) if key.split(" ")[0] in ("POST", "PATCH") else {}
        with self._lock:
            if key == "GET /v1/databases/{id}":
                return self._database_object(self._database(object_id or ""))
            if key == "GET /v1/data_sources/{id}":
                return self._data_source_object(self._data_source(object_id or ""))
            if key == "PATCH /v1/data_sources/{id}":
                return self._update_data_source(self._data_source(object_id or ""), payload)
            if key == "POST /v1/data_sources/{id}/query":
                return self._query(self._data_source(object_id or ""), payload)
            if key == "POST /v1/pages":
                return self._create_page(payload)
            if key == "GET /v1/pages/{id}":
                return self._page_object(self._page(object_id or ""))
            if key == "PATCH /v1/pages/{id}":
                return self._update_page(self._page(object_id or ""), payload)
        raise NotionError(400, "invalid_request_url", "Invalid request URL.")

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError as error:
            raise NotionError(400, "invalid_json", "Error parsing JSON body.") from error
        if not isinstance(payload, dict):
            raise _invalid("body failed validation: body should be an object.")
        return payload

    # -- objects -------------------------------------------------------------------------------

    def _database(self, object_id: str) -> dict[str, Any]:
        found = self.databases.get(_compact(object_id))
        if found is None:
            raise NotionError(
                404,
                "object_not_found",
                f"Could not find database with ID: {object_id}. Make sure the relevant pages "
                "and databases are shared with your integration.",
            )
        return found

    def _data_source(self, object_id: str) -> dict[str, Any]:
        found = self.data_sources.get(_compact(object_id))
        if found is None:
            raise NotionError(
                404,
                "object_not_found",
                f"Could not find data_source with ID: {object_id}. Make sure the relevant "
                "pages and databases are shared with your integration.",
            )
        return found

    def _page(self, object_id: str) -> dict[str, Any]:
        found = self.pages.get(_compact(object_id))
        if found is None:
            raise NotionError(
                404,
                "object_not_found",
                f"Could not find page with ID: {object_id}. Make sure the relevant pages and "
                "databases are shared with your integration.",
            )
        return found

    @staticmethod
    def _title(text: str) -> list[dict[str, Any]]:
        return [
            {
                "type": "text",
                "text": {"content": text, "link": None},
                "annotations": dict(DEFAULT_ANNOTATIONS),
                "plain_text": text,
                "href": None,
            }
        ]

    def _database_object(self, db: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "database",
            "id": db["id"],
            "title": self._title(db["title"]),
            "description": [],
            "parent": {"type": "workspace", "workspace": True},
            "is_inline": False,
            "in_trash": False,
            "is_locked": False,
            "data_sources": [
                {"id": ds, "name": self.data_sources[_compact(ds)]["title"]} for ds in db["sources"]
            ],
            "url": f"https://www.notion.so/{_compact(db['id'])}",
        }

    def _data_source_object(self, ds: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "data_source",
            "id": ds["id"],
            "title": self._title(ds["title"]),
            "parent": {"type": "database_id", "database_id": ds["database_id"]},
            "database_parent": {"type": "workspace", "workspace": True},
            "archived": False,
            "in_trash": False,
            "properties": copy.deepcopy(ds["properties"]),
        }

    def _new_property(self, name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        if kind not in WRITABLE_TYPES:
            raise _invalid(
                f"body failed validation: body.properties.{name}.type `{kind}` is not supported."
            )
        prop: dict[str, Any] = {"id": self._property_id(kind), "name": name, "type": kind}
        if kind in ("select", "multi_select", "status"):
            options = []
            for option in (config or {}).get("options") or []:
                options.append(self._new_option(name, option.get("name", ""), option.get("color")))
            prop[kind] = {"options": options}
        elif kind == "number":
            prop[kind] = {"format": (config or {}).get("format", "number")}
        else:
            prop[kind] = {}
        return prop

    def _property_id(self, kind: str) -> str:
        """Short and random like Notion's, unique (page values are keyed by it); the title
        property's id is always "title"."""
        if kind == "title":
            return "title"
        while True:
            candidate = uuid.uuid4().hex[:6]
            if candidate not in self._property_ids:
                self._property_ids.add(candidate)
                return candidate

    @staticmethod
    def _new_option(prop: str, name: str, color: str | None = None) -> dict[str, Any]:
        if not isinstance(name, str) or not name or "," in name or len(name) > 100:
            raise _invalid(
                f"body failed validation: body.properties.{prop} option name {_shown(name)} "
                "must be 1-100 characters without commas."
            )
        return {"id": uuid.uuid4().hex[:8], "name": name, "color": color or "default"}

    def _find_property(self, ds: dict[str, Any], name_or_id: str) -> dict[str, Any] | None:
        props = ds["properties"]
        if name_or_id in props:
            return props[name_or_id]
        return next((p for p in props.values() if p["id"] == name_or_id), None)

    def _update_data_source(self, ds: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        changes = payload.get("properties") or {}
        if not isinstance(changes, dict):
            raise _invalid("body failed validation: body.properties should be an object.")
        new_props = copy.deepcopy(ds["properties"])
        staged = {**ds, "properties": new_props}
        retyped: list[str] = []
        for key, change in changes.items():
            existing = self._find_property(staged, key)
            if change is None:
                if existing is None:
                    raise _invalid(f"{key} is not a property that exists.")
                if existing["type"] == "title":
                    raise _invalid("Cannot delete the title property.")
                del new_props[existing["name"]]
                continue
            if not isinstance(change, dict):
                raise _invalid(
                    f"body failed validation: body.properties.{key} should be an object."
                )
            kinds = [k for k in change if k in WRITABLE_TYPES or k == "type"]
            kind = change.get("type") or next((k for k in kinds if k != "type"), None)
            if existing is None:
                if kind is None:
                    raise _failed(f"body.properties.{key}.type", "defined", "undefined")
                if kind == "title":
                    raise _invalid("Cannot create new title property.")
                new_props[key] = self._new_property(key, kind, change.get(kind) or {})
                continue
            name = existing["name"]
            if kind and kind != existing["type"]:
                if "title" in (kind, existing["type"]):
                    raise _invalid("Cannot change the type of the title property.")
                replacement = self._new_property(name, kind, change.get(kind) or {})
                replacement["id"] = existing["id"]
                new_props[name] = existing = replacement
                retyped.append(replacement["id"])
            elif kind in ("select", "multi_select", "status"):
                known = {o["name"] for o in existing[kind]["options"]}
                for option in (change.get(kind) or {}).get("options") or []:
                    if option.get("name") not in known:
                        existing[kind]["options"].append(
                            self._new_option(name, option.get("name"), option.get("color"))
                        )
            new_name = change.get("name")
            if new_name and new_name != name:
                if new_name in new_props:
                    raise _invalid(f"A property named {new_name} already exists.")
                existing["name"] = new_name
                new_props[new_name] = new_props.pop(name)
        ds["properties"] = new_props
        # Notion converts the values of a retyped property; this fake simply empties them.
        for page in self.pages.values():
            if page["data_source"] == _compact(ds["id"]):
                for prop_id in retyped:
                    page["values"].pop(prop_id, None)
        return self._data_source_object(ds)

    # -- pages -----------------------------------------------------------------------------

    def _create_page(self, payload: dict[str, Any]) -> dict[str, Any]:
        parent = payload.get("parent")
        if not isinstance(parent, dict):
            raise _invalid(
                "body failed validation: body.parent should be defined, instead was `undefined`."
            )
        if parent.get("data_source_id"):
            ds = self._data_source(str(parent["data_source_id"]))
        elif parent.get("database_id"):
            db = self._database(str(parent["database_id"]))
            if len(db["sources"]) != 1:
                raise _invalid("The database has several data sources: give a data_source_id.")
            ds = self._data_source(db["sources"][0])
        else:
            raise _invalid(
                "body failed validation: body.parent.data_source_id should be defined, "
                "instead was `undefined`."
            )
        properties = payload.get("properties") or {}
        if not isinstance(properties, dict):
            raise _invalid("body failed validation: body.properties should be an object.")
        values = self._validated_values(ds, properties)
        page_id = str(uuid.uuid4())
        now = _now_iso(minute=True, moment=self.now())
        self._created += 1
        page = {
            "id": page_id,
            "data_source": _compact(ds["id"]),
            "values": values,
            "created_time": now,
            "last_edited_time": now,
            "order": self._created,
            "in_trash": False,
        }
        self.pages[_compact(page_id)] = page
        return self._page_object(page)

    def _update_page(self, page: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        ds = self.data_sources[page["data_source"]]
        properties = payload.get("properties") or {}
        if not isinstance(properties, dict):
            raise _invalid("body failed validation: body.properties should be an object.")
        values = self._validated_values(ds, properties)
        page["values"].update(values)
        for flag in ("in_trash", "archived"):
            if flag in payload:
                page["in_trash"] = bool(payload[flag])
        page["last_edited_time"] = _now_iso(minute=True, moment=self.now())
        return self._page_object(page)

    def _validated_values(self, ds: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
        """{property id: stored data}; nothing is stored unless every value is valid."""
        out: dict[str, Any] = {}
        new_options: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for name, raw in properties.items():
            prop = self._find_property(ds, name)
            if prop is None:
                raise _invalid(f"{name} is not a property that exists.")
            out[prop["id"]] = self._validated(prop, raw, new_options)
        for prop, option in new_options:
            if option["name"] not in {o["name"] for o in prop[prop["type"]]["options"]}:
                prop[prop["type"]]["options"].append(option)
        return out

    def _validated(
        self,
        prop: dict[str, Any],
        raw: Any,
        new_options: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> Any:
        name, kind = prop["name"], prop["type"]
        where = f"body.properties.{name}"
        if not isinstance(raw, dict):
            raise _invalid(
                f"body failed validation: {where} should be an object, instead was `{_shown(raw)}`."
            )
        if raw.get("type", kind) != kind or kind not in raw:
            raise _invalid(f"{name} is expected to be {kind}.")
        value = raw[kind]
        if kind in ("title", "rich_text"):
            return self._rich_text(f"{where}.{kind}", value)
        if kind == "number":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise _failed(f"{where}.number", "a number or `null`", _shown(value))
            return value
        if kind == "checkbox":
            if not isinstance(value, bool):
                raise _failed(f"{where}.checkbox", "a boolean", _shown(value))
            return value
        if kind in ("email", "url", "phone_number"):
            limit = 2000 if kind == "url" else 200
            if value is not None and not isinstance(value, str):
                raise _failed(f"{where}.{kind}", "a string or `null`", _shown(value))
            if value is not None and len(value) > limit:
                raise _failed(f"{where}.{kind}.length", f"≤ `{limit}`", len(value))
            return value or None
        if kind == "date":
            if value is None:
                return None
            if not isinstance(value, dict) or _parse_date(value.get("start")) is None:
                start = value.get("start") if isinstance(value, dict) else value
                raise _failed(f"{where}.date.start", "an ISO 8601 date string", _shown(start))
            if value.get("end") is not None and _parse_date(value.get("end")) is None:
                raise _failed(
                    f"{where}.date.end", "an ISO 8601 date string", _shown(value.get("end"))
                )
            return {
                "start": value["start"],
                "end": value.get("end"),
                "time_zone": value.get("time_zone"),
            }
        if kind in ("select", "status"):
            if value is None:
                return None
            return self._option(prop, value, where, new_options)
        if kind == "multi_select":
            if not isinstance(value, list) or len(value) > 100:
                raise _failed(
                    f"{where}.multi_select", "an array of at most 100 options", _shown(value)
                )
            return [self._option(prop, v, where, new_options) for v in value]
        raise _invalid(f"{name} cannot be written.")

    def _option(
        self,
        prop: dict[str, Any],
        value: Any,
        where: str,
        new_options: list[tuple[dict[str, Any], dict[str, Any]]],
    ) -> dict[str, Any]:
        kind = prop["type"]
        if not isinstance(value, dict) or not (value.get("name") or value.get("id")):
            raise _failed(f"{where}.{kind}.name", "defined", "undefined")
        options = prop[kind]["options"] + [o for p, o in new_options if p is prop]
        for option in options:
            if option["id"] == value.get("id") or option["name"] == value.get("name"):
                return dict(option)
        if kind == "status" or not value.get("name"):
            raise _invalid(
                f"Invalid {kind} option. {kind.title()} option "
                f"{_shown(value.get('name') or value.get('id'))} does not exist."
            )
        option = self._new_option(prop["name"], value["name"], value.get("color"))
        new_options.append((prop, option))
        return dict(option)

    @staticmethod
    def _rich_text(where: str, items: Any) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise _failed(where, "an array", _shown(items))
        if len(items) > 100:
            raise _failed(f"{where}.length", "≤ `100`", len(items))
        out = []
        for index, item in enumerate(items):
            text = item.get("text") if isinstance(item, dict) else None
            content = text.get("content") if isinstance(text, dict) else None
            if not isinstance(content, str):
                raise _failed(f"{where}[{index}].text.content", "a string", _shown(content))
            length = _utf16_len(content)
            if length > 2000:
                raise _failed(f"{where}[{index}].text.content.length", "≤ `2000`", length)
            link = text.get("link")
            out.append(
                {
                    "type": "text",
                    "text": {"content": content, "link": link},
                    "annotations": {**DEFAULT_ANNOTATIONS, **(item.get("annotations") or {})},
                    "plain_text": content,
                    "href": (link or {}).get("url") if isinstance(link, dict) else None,
                }
            )
        return out

    def _page_object(self, page: dict[str, Any], copied: bool = True) -> dict[str, Any]:
        """The page as the API shows it. `copied=False` shares the stored values: only for
        reading inside one request (filters, sorts), never for an answer."""
        ds = self.data_sources[page["data_source"]]
        properties: Mapping[str, Any]
        if copied:
            properties = {
                name: _property(prop, page, copy.deepcopy)
                for name, prop in ds["properties"].items()
            }
        else:
            properties = _PropertyView(ds["properties"], page)
        return {
            "object": "page",
            "id": page["id"],
            "created_time": page["created_time"],
            "last_edited_time": page["last_edited_time"],
            "created_by": BOT_USER,
            "last_edited_by": BOT_USER,
            "cover": None,
            "icon": None,
            "parent": {
                "type": "data_source_id",
                "data_source_id": ds["id"],
                "database_id": ds["database_id"],
            },
            "archived": page["in_trash"],
            "in_trash": page["in_trash"],
            "is_locked": False,
            "properties": properties,
            "url": f"https://www.notion.so/{_compact(page['id'])}",
            "public_url": None,
        }

    # -- queries -------------------------------------------------------------------------------

    def _query(self, ds: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        size = payload.get("page_size", 100)
        if isinstance(size, bool) or not isinstance(size, int):
            raise _failed("body.page_size", "a number", _shown(size))
        if size > 100:
            raise _invalid(
                f"body failed validation: body.page_size should be ≤ `100`, instead was `{size}`."
            )
        if size < 1:
            raise _invalid(
                f"body failed validation: body.page_size should be ≥ `1`, instead was `{size}`."
            )
        match = self._compile(ds, payload["filter"], 0) if payload.get("filter") else None
        pages = [
            p
            for p in sorted(self.pages.values(), key=lambda p: p["order"])
            if p["data_source"] == _compact(ds["id"]) and not p["in_trash"]
        ]
        # Filtered and sorted on uncopied views (a large database stays cheap to query);
        # only the pages answered are copied.
        objects = [self._page_object(p, copied=False) for p in pages]
        if match is not None:
            objects = [o for o in objects if match(o)]
        for sort in reversed(payload.get("sorts") or []):
            objects.sort(
                key=self._sort_key(ds, sort), reverse=sort.get("direction") == "descending"
            )
        start = 0
        cursor = payload.get("start_cursor")
        if cursor:
            ids = [_compact(o["id"]) for o in objects]
            if _compact(str(cursor)) not in ids:
                raise _invalid(
                    f"body failed validation: body.start_cursor `{cursor}` is not a valid cursor."
                )
            start = ids.index(_compact(str(cursor)))
        chunk = [
            self._page_object(self.pages[_compact(o["id"])]) for o in objects[start : start + size]
        ]
        more = start + size < len(objects)
        return {
            "object": "list",
            "results": chunk,
            "next_cursor": objects[start + size]["id"] if more else None,
            "has_more": more,
            "type": "page_or_data_source",
            "page_or_data_source": {},
        }

    def _sort_key(
        self, ds: dict[str, Any], sort: dict[str, Any]
    ) -> Callable[[dict[str, Any]], Any]:
        if sort.get("timestamp") in ("created_time", "last_edited_time"):
            field = sort["timestamp"]
            return lambda o: o[field]
        prop = self._find_property(ds, str(sort.get("property")))
        if prop is None:
            raise _invalid(f"Could not find sort property with name or id: {sort.get('property')}")
        name = prop["name"]
        return lambda o: (_plain(o["properties"][name]) is None, str(_plain(o["properties"][name])))

    def _compile(
        self, ds: dict[str, Any], spec: Any, depth: int
    ) -> Callable[[dict[str, Any]], bool]:
        if not isinstance(spec, dict):
            raise _invalid("body failed validation: body.filter should be an object.")
        for compound in ("and", "or"):
            if compound in spec:
                if depth > 2:
                    raise _invalid(
                        "body failed validation: filters can be nested at most two levels deep."
                    )
                parts = spec[compound]
                if not isinstance(parts, list):
                    raise _invalid(
                        f"body failed validation: body.filter.{compound} should be an array."
                    )
                if len(parts) > self.max_filter_conditions:
                    raise _invalid(
                        f"body failed validation: body.filter.{compound}.length should be ≤ "
                        f"`{self.max_filter_conditions}`, instead was `{len(parts)}`."
                    )
                matchers = [self._compile(ds, part, depth + 1) for part in parts]
                if compound == "and":
                    return lambda page: all(m(page) for m in matchers)
                return lambda page: any(m(page) for m in matchers)
        if "timestamp" in spec:
            return _timestamp_matcher(spec)
        name = spec.get("property")
        if not isinstance(name, str):
            raise _failed("body.filter.property", "defined", "undefined")
        prop = self._find_property(ds, name)
        if prop is None:
            raise _invalid(f"Could not find property with name or id: {name}")
        conditions = [k for k in spec if k not in ("property", "type")]
        if len(conditions) != 1:
            raise _invalid(
                f"body failed validation: body.filter should have exactly one condition for {name}."
            )
        kind = conditions[0]
        if kind != prop["type"]:
            raise _invalid(
                f"body failed validation: the filter for {name} uses `{kind}`, "
                f"but {name} is a {prop['type']} property."
            )
        condition = spec[kind]
        if not isinstance(condition, dict) or len(condition) != 1:
            raise _invalid(f"body failed validation: body.filter.{kind} should have one operator.")
        op, operand = next(iter(condition.items()))
        test = _operator(kind, op, operand, name)
        prop_name = prop["name"]
        return lambda page: test(_plain(page["properties"][prop_name]))

    def _simple_value(self, ds: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        """Seeding helper: a plain Python value in the write shape for the property's type."""
        prop = self._find_property(ds, name)
        if prop is None:
            raise KeyError(f"{name} is not a property of {ds['title']}")
        kind = prop["type"]
        if kind in ("title", "rich_text"):
            text = str(value or "")
            pieces = [text[i : i + 2000] for i in range(0, len(text), 2000)]
            return {kind: [{"type": "text", "text": {"content": p}} for p in pieces]}
        if kind in ("select", "status"):
            return {kind: {"name": value} if value else None}
        if kind == "multi_select":
            return {kind: [{"name": v} for v in value]}
        if kind == "date":
            if isinstance(value, datetime):
                value = value.isoformat()
            return {kind: {"start": value} if value else None}
        return {kind: value}


def _property(
    prop: dict[str, Any], page: dict[str, Any], copied: Callable[[Any], Any] = lambda v: v
) -> dict[str, Any]:
    """One property of a page in the response shape."""
    kind = prop["type"]
    stored = page["values"].get(prop["id"], _EMPTY.get(kind))
    return {"id": prop["id"], "type": kind, kind: copied(stored)}


class _PropertyView(Mapping[str, Any]):
    """A page's properties built only when read: a filter on a large database reads one or
    two of each page's thirty properties."""

    def __init__(self, props: dict[str, Any], page: dict[str, Any]) -> None:
        self._props, self._page = props, page

    def __getitem__(self, name: str) -> dict[str, Any]:
        return _property(self._props[name], self._page)

    def __iter__(self) -> Iterator[str]:
        return iter(self._props)

    def __len__(self) -> int:
        return len(self._props)


_EMPTY: dict[str, Any] = {
    "title": [],
    "rich_text": [],
    "multi_select": [],
    "checkbox": False,
}


def _plain(value: dict[str, Any]) -> Any:
    """A property value (response shape) as plain Python: text joined, option names."""
    kind = value["type"]
    data = value[kind]
    if kind in ("title", "rich_text"):
        return "".join(item["plain_text"] for item in data)
    if kind in ("select", "status"):
        return data["name"] if data else None
    if kind == "multi_select":
        return [o["name"] for o in data]
    if kind == "date":
        return data["start"] if data else None
    return data


TIMESTAMPS = ("created_time", "last_edited_time")
TIMESTAMP_OPERATORS = ("equals", "before", "after", "on_or_before", "on_or_after")


def _timestamp_matcher(spec: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """A `{"timestamp": ..., <timestamp>: {<operator>: <ISO date>}}` condition, as Notion
    documents it, matched against the page's own timestamp (minute resolution)."""
    field = spec["timestamp"]
    if field not in TIMESTAMPS:
        raise _failed(
            "body.filter.timestamp", "`created_time` or `last_edited_time`", _shown(field)
        )
    extra = sorted(k for k in spec if k not in ("timestamp", field, "type"))
    if extra:
        raise _invalid(
            f"body failed validation: body.filter should have only `timestamp` and `{field}`, "
            f"instead had `{extra[0]}`."
        )
    condition = spec.get(field)
    if not isinstance(condition, dict):
        raise _failed(f"body.filter.{field}", "an object", _shown(condition))
    if len(condition) != 1:
        raise _invalid(f"body failed validation: body.filter.{field} should have one operator.")
    op, operand = next(iter(condition.items()))
    if op not in TIMESTAMP_OPERATORS:
        raise _invalid(
            f"body failed validation: body.filter.{field}.{op} is not a supported operator; "
            f"use one of {', '.join(TIMESTAMP_OPERATORS)}."
        )
    if _parse_date(operand) is None:
        raise _failed(f"body.filter.{field}.{op}", "an ISO 8601 date string", _shown(operand))
    test = _operator("date", op, operand, field)
    return lambda page: test(page[field])


def _operator(kind: str, op: str, operand: Any, name: str) -> Callable[[Any], bool]:
    """The test one filter condition applies to a property's plain value."""
    if op == "is_empty":
        return lambda v: v in (None, "", [])
    if op == "is_not_empty":
        return lambda v: v not in (None, "", [])
    if kind in TEXT_TYPES:
        text_ops: dict[str, Callable[[str, str], bool]] = {
            "equals": lambda v, o: v == o,
            "does_not_equal": lambda v, o: v != o,
            "contains": lambda v, o: o in v,
            "does_not_contain": lambda v, o: o not in v,
            "starts_with": lambda v, o: v.startswith(o),
            "ends_with": lambda v, o: v.endswith(o),
        }
        if op in text_ops and isinstance(operand, str):
            check = text_ops[op]
            return lambda v: check(v or "", operand)
    elif kind == "number":
        number_ops: dict[str, Callable[[float, float], bool]] = {
            "equals": lambda v, o: v == o,
            "does_not_equal": lambda v, o: v != o,
            "greater_than": lambda v, o: v > o,
            "less_than": lambda v, o: v < o,
            "greater_than_or_equal_to": lambda v, o: v >= o,
            "less_than_or_equal_to": lambda v, o: v <= o,
        }
        if op in number_ops and isinstance(operand, int | float) and not isinstance(operand, bool):
            check_number = number_ops[op]
            return lambda v: v is not None and check_number(v, operand)
    elif kind == "checkbox":
        if op in ("equals", "does_not_equal") and isinstance(operand, bool):
            return (lambda v: v is operand) if op == "equals" else (lambda v: v is not operand)
    elif kind in ("select", "status"):
        if op in ("equals", "does_not_equal") and isinstance(operand, str):
            return (lambda v: v == operand) if op == "equals" else (lambda v: v != operand)
    elif kind == "multi_select":
        if op in ("contains", "does_not_contain") and isinstance(operand, str):
            return (lambda v: operand in v) if op == "contains" else (lambda v: operand not in v)
    elif kind == "date":
        target = _parse_date(operand)
        date_only = isinstance(operand, str) and len(operand) == 10
        date_ops: dict[str, Callable[[Any, Any], bool]] = {
            "equals": lambda v, o: v == o,
            "before": lambda v, o: v < o,
            "after": lambda v, o: v > o,
            "on_or_before": lambda v, o: v <= o,
            "on_or_after": lambda v, o: v >= o,
        }
        if op in date_ops and target is not None:
            check_date = date_ops[op]

            def test(v: Any) -> bool:
                moment = _parse_date(v)
                if moment is None:
                    return False
                if date_only:
                    return check_date(moment.date(), target.date())
                return check_date(moment, target)

            return test
    raise _invalid(
        f"body failed validation: `{op}` with {_shown(operand)} is not a valid {kind} "
        f"condition for {name}."
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    fake: FakeNotion

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload, delay = self.fake.handle(
            self.command, self.path, self.headers, body
        )
        if delay:
            time.sleep(delay)  # the reply arrives after the client gave up
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return
