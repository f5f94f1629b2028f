"""A faithful in-process fake of the Resend HTTP API: `POST /emails`, `POST /emails/batch`.

A real HTTP server on 127.0.0.1 (an ephemeral port, a thread per connection), so the resend
SDK runs its own request and error code paths against it. It does what Resend does, as far
as the sender relies on it (https://resend.com/docs/api-reference):

- Bearer auth: no key -> 401 `missing_api_key`; a wrong key -> 403 `invalid_api_key`.
- Error bodies `{"statusCode", "name", "message"}`; 422 `missing_required_field` /
  `validation_error` for a missing or bad `from`/`to`/`subject`/body, a bad address, bad
  tag characters, more than 50 recipients, more than 100 emails in a batch (a batch is
  validated strictly: one bad email refuses the whole batch and sends nothing).
- `Idempotency-Key` (1-256 chars, else 400 `invalid_idempotency_key`): the same key and
  body within 24 h replays the original response and sends nothing; the same key with a
  different body is 409 `invalid_idempotent_request`; the same key while the first request
  is still in flight is 409 `concurrent_idempotent_requests`. Only accepted requests are
  remembered (a refused one may be corrected and re-sent under its key).
- A rate limit per API key (a token bucket: `rate_limit` requests per `window_s`, bursts up
  to `rate_limit`) answering 429 `rate_limit_exceeded` with `retry-after`, and the
  `ratelimit-limit/remaining/reset` headers on every response.
- An optional daily quota (429 `daily_quota_exceeded`, counted in emails).
- Fault injection, seeded: with probability `fault_rate` a request gets one of
  `fault_kinds`: "500" and "429" (answered before anything is sent), "timeout" (the email
  is sent, then the reply is held for `hang_s`, past the client's timeout, with the key in
  flight) and "drop" (the email is sent, then the connection is closed with no reply).

Every accepted email is recorded (`accepted`), every request logged (`requests`), so tests
can check that each message was delivered exactly once, with its headers and tags.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

DEFAULT_API_KEY = "re_fake_0123456789abcdef"
MAX_BATCH = 100
MAX_RECIPIENTS = 50
FAULT_KINDS = ("500", "429", "timeout", "drop")

_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[A-Za-z0-9-]{2,}$")
_NAMED = re.compile(r"^[^<>]*<([^<>]+)>$")
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_BAD_ADDRESS = (
    "Invalid `{field}` field. The email address needs to follow the `email@example.com` "
    "or `Name <email@example.com>` format."
)


@dataclass(frozen=True)
class AcceptedEmail:
    """One email the fake accepted (as Resend would queue it for delivery)."""

    id: str
    endpoint: str
    idempotency_key: str | None
    payload: dict[str, Any]

    @property
    def to(self) -> list[str]:
        to = self.payload["to"]
        return [to] if isinstance(to, str) else list(to)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.payload.get("headers") or {})

    @property
    def tags(self) -> dict[str, str]:
        return {t["name"]: t.get("value", "") for t in self.payload.get("tags") or []}

    @property
    def reply_to(self) -> list[str]:
        reply_to = self.payload.get("reply_to") or []
        return [reply_to] if isinstance(reply_to, str) else list(reply_to)

    @property
    def html(self) -> str:
        return str(self.payload.get("html") or "")


@dataclass(frozen=True)
class LoggedRequest:
    path: str
    idempotency_key: str | None
    status: int  # 0: no reply (a dropped connection)
    name: str  # the error name, "" on success; faults are "fault:<kind>"


class _ApiError(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


@dataclass
class _KeyEntry:
    fingerprint: str
    created: float
    done: bool = False
    status: int = 0
    body: dict[str, Any] | list[Any] = field(default_factory=dict)


@dataclass
class _Held:
    key: str | None
    entry: _KeyEntry | None
    status: int
    body: dict[str, Any]
    released: threading.Event = field(default_factory=threading.Event)


class FakeResendAPI:
    """Start with `with FakeResendAPI(...) as fake:`; point the SDK at `fake.base_url`."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        rate_limit: int | None = 2,
        window_s: float = 1.0,
        daily_quota: int | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] = ("500", "429", "timeout"),
        seed: int = 0,
        hang_s: float = 1.0,
        latency_s: float = 0.0,
        idempotency_ttl_s: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unknown = set(fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.window_s = window_s
        self.daily_quota = daily_quota
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.hang_s = hang_s
        self.latency_s = latency_s  # every request takes this long, like a real network
        self.started = 0  # requests that arrived, answered or not yet
        self.idempotency_ttl_s = idempotency_ttl_s
        self._clock = clock
        self._random = random.Random(seed)
        self._lock = threading.RLock()  # re-entered: _log under the lock
        self._stopping = threading.Event()
        self._buckets: dict[str, tuple[float, float]] = {}  # api key -> (tokens, stamp)
        self._keys: dict[str, _KeyEntry] = {}
        self._accepted: list[AcceptedEmail] = []
        self._requests: list[LoggedRequest] = []
        self._scripted: collections.deque[tuple[int, str, str, dict[str, str]]] = (
            collections.deque()
        )
        self._hold = 0
        self._held: list[_Held] = []
        self._quota_used = 0
        self._connections: set[socket.socket] = set()
        self._server: LoopbackServer | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeResendAPI:
        server = LoopbackServer(_Handler, "fake-resend", before_close=self._hang_up_idle)
        server.server.fake = self  # type: ignore[attr-defined]
        self._server = server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.release()
        if self._server is not None:
            self._server.stop()
        self._server = None

    def _hang_up_idle(self) -> None:
        """Run between the server's shutdown and close: idle keep-alive connections would
        linger otherwise."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeResendAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running")
        return self._server.base_url

    # -- what tests look at --------------------------------------------------------------

    @property
    def accepted(self) -> list[AcceptedEmail]:
        with self._lock:
            return list(self._accepted)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def deliveries(self) -> collections.Counter[str]:
        """How many emails each recipient address was sent."""
        counter: collections.Counter[str] = collections.Counter()
        for email in self.accepted:
            counter.update(email.to)
        return counter

    def count(self, status: int, name: str | None = None) -> int:
        return sum(
            1 for r in self.requests if r.status == status and (name is None or r.name == name)
        )

    # -- what tests steer ----------------------------------------------------------------

    def script(
        self,
        status: int,
        name: str,
        message: str = "scripted error",
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` authorised requests with this error, sending nothing."""
        with self._lock:
            for _ in range(times):
                self._scripted.append((status, name, message, dict(headers or {})))

    def hold_next(self, count: int = 1) -> None:
        """Hold the reply of the next `count` accepted requests (their key stays in flight)
        until `release()`: the emails are sent, the client times out waiting."""
        with self._lock:
            self._hold += count

    def release(self) -> None:
        """Finish every held request now: its key is settled before this returns."""
        with self._lock:
            held, self._held = self._held, []
            for item in held:
                self._settle(item.entry, item.status, item.body)
        for item in held:
            item.released.set()

    def reset_quota(self) -> None:
        with self._lock:
            self._quota_used = 0

    # -- request handling (called from the handler threads) -------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        key = handler.headers.get("Idempotency-Key")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.started += 1
        if self.latency_s:
            self._stopping.wait(self.latency_s)
        token = _bearer(handler.headers.get("Authorization"))
        if path not in ("/emails", "/emails/batch"):
            self._reply(handler, path, key, 404, _error(404, "not_found", "Not found"), {})
            return
        if not token:
            body = _error(401, "missing_api_key", "Missing API key in the authorization header")
            self._reply(handler, path, key, 401, body, {})
            return
        if token != self.api_key:
            body = _error(403, "invalid_api_key", "API key is invalid")
            self._reply(handler, path, key, 403, body, {})
            return
        mode = (handler.headers.get("x-batch-validation") or "strict").lower()
        if path == "/emails/batch" and mode != "strict":
            # Not modelled: the sender uses strict batches (the default) only.
            body = _error(400, "validation_error", "This fake supports strict batches only.")
            self._reply(handler, path, key, 400, body, {})
            return

        with self._lock:
            allowed, limit_headers = self._take_token(token)
            if not allowed:
                error = _error(
                    429,
                    "rate_limit_exceeded",
                    f"Too many requests: at most {self.rate_limit} per {self.window_s:g}s. "
                    "See the rate limit response headers.",
                )
                self._log(path, key, 429, "rate_limit_exceeded")
                scripted = None
                fault = None
            else:
                error = None
                scripted = self._scripted.popleft() if self._scripted else None
                fault = self._draw_fault() if scripted is None else None
        if error is not None:
            handler.send_json(429, error, limit_headers)
            return
        if scripted is not None:
            status, name, message, extra = scripted
            self._log(path, key, status, name)
            handler.send_json(status, _error(status, name, message), {**limit_headers, **extra})
            return
        if fault == "500":
            self._log(path, key, 500, "fault:500")
            body = _error(500, "application_error", "An unexpected error occurred.")
            handler.send_json(500, body, limit_headers)
            return
        if fault == "429":
            self._log(path, key, 429, "fault:429")
            body = _error(429, "rate_limit_exceeded", "Too many requests.")
            handler.send_json(429, body, {**limit_headers, "retry-after": "1"})
            return

        try:
            status, body, entry, held = self._process(path, key, raw)
        except _ApiError as exc:
            self._log(path, key, exc.status, exc.name)
            handler.send_json(exc.status, _error(exc.status, exc.name, exc.message), limit_headers)
            return

        if held is not None:  # a test holds this reply: the client times out meanwhile
            self._log(path, key, 0, "held")
            while not held.released.wait(0.05):
                if self._stopping.is_set():
                    break
            handler.close_connection = True
            handler.send_json(status, body, limit_headers)  # if the client still waits
            return
        if fault == "drop":
            self._settle_locked(entry, status, body)
            self._log(path, key, 0, "fault:drop")
            handler.close_connection = True
            return
        if fault == "timeout":
            self._log(path, key, 0, "fault:timeout")
            self._stopping.wait(self.hang_s)  # the key stays in flight meanwhile
            self._settle_locked(entry, status, body)
            handler.close_connection = True
            handler.send_json(status, body, limit_headers)  # the client gave up long ago
            return
        self._settle_locked(entry, status, body)
        self._log(path, key, status, "")
        handler.send_json(status, body, limit_headers)

    def _process(
        self, path: str, key: str | None, raw: bytes
    ) -> tuple[int, dict[str, Any], _KeyEntry | None, _Held | None]:
        """Validate, dedupe and accept one request: (status, body, key entry, held)."""
        try:
            payload = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _ApiError(400, "validation_error", "Invalid JSON in the request body.") from None
        if key is not None and not 1 <= len(key) <= 256:
            raise _ApiError(400, "invalid_idempotency_key", "The key must be between 1-256 chars.")
        fingerprint = hashlib.sha256(
            (path + "\n" + json.dumps(payload, sort_keys=True)).encode()
        ).hexdigest()
        now = self._clock()
        with self._lock:
            if key is not None:
                entry = self._keys.get(key)
                if entry is not None and now - entry.created > self.idempotency_ttl_s:
                    del self._keys[key]
                    entry = None
                if entry is not None:
                    if not entry.done:
                        raise _ApiError(
                            409,
                            "concurrent_idempotent_requests",
                            "Same idempotency key used while the original request is still "
                            "in progress.",
                        )
                    if entry.fingerprint != fingerprint:
                        raise _ApiError(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload.",
                        )
                    replay = entry.body if isinstance(entry.body, dict) else {}
                    return entry.status, json.loads(json.dumps(replay)), None, None
            emails = _validate(path, payload)
            if self.daily_quota is not None and self._quota_used + len(emails) > self.daily_quota:
                raise _ApiError(
                    429, "daily_quota_exceeded", "You have reached your daily email sending quota."
                )
            self._quota_used += len(emails)
            ids = [str(uuid.uuid4()) for _ in emails]
            for email_id, email in zip(ids, emails, strict=True):
                self._accepted.append(AcceptedEmail(email_id, path, key, email))
            body: dict[str, Any] = (
                {"data": [{"id": i} for i in ids]} if path == "/emails/batch" else {"id": ids[0]}
            )
            new_entry = None
            if key is not None:
                new_entry = _KeyEntry(fingerprint, now)
                self._keys[key] = new_entry
            held = None
            if self._hold > 0:
                self._hold -= 1
                held = _Held(key, new_entry, 200, body)
                self._held.append(held)
        return 200, body, new_entry, held

    def _settle(self, entry: _KeyEntry | None, status: int, body: dict[str, Any]) -> None:
        if entry is not None and not entry.done:
            entry.status, entry.body, entry.done = status, body, True

    def _settle_locked(self, entry: _KeyEntry | None, status: int, body: dict[str, Any]) -> None:
        with self._lock:
            self._settle(entry, status, body)

    def _take_token(self, token: str) -> tuple[bool, dict[str, str]]:
        """Token bucket per API key; returns (allowed, the ratelimit headers)."""
        if self.rate_limit is None:
            return True, {}
        capacity = float(self.rate_limit)
        refill = capacity / self.window_s  # tokens a second
        now = self._clock()
        tokens, stamp = self._buckets.get(token, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - stamp) * refill)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[token] = (tokens, now)
        headers = {
            "ratelimit-limit": str(self.rate_limit),
            "ratelimit-remaining": str(int(tokens)),
            "ratelimit-reset": str(math.ceil((capacity - tokens) / refill)),
        }
        if not allowed:
            headers["retry-after"] = str(max(1, math.ceil((1 - tokens) / refill)))
        return allowed, headers

    def _draw_fault(self) -> str | None:
        if self.fault_rate <= 0 or self._random.random() >= self.fault_rate:
            return None
        return self._random.choice(self.fault_kinds)

    def _log(self, path: str, key: str | None, status: int, name: str) -> None:
        with self._lock:
            self._requests.append(LoggedRequest(path, key, status, name))

    def _reply(
        self,
        handler: _Handler,
        path: str,
        key: str | None,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        self._log(path, key, status, str(body.get("name", "")))
        handler.send_json(status, body, headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's clients expect
    timeout = 30  # idle keep-alive connections close by themselves
    server: ThreadingHTTPServer

    @property
    def fake(self) -> FakeResendAPI:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        with suppress(OSError):
            super().finish()

    def do_POST(self) -> None:  # http.server names handlers do_<METHOD>
        self.fake._handle(self)

    def do_GET(self) -> None:
        self.send_json(405, _error(405, "method_not_allowed", "Method not allowed"), {})

    def send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client hung up (it timed out): nothing to tell it
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet tests
        return


# -- validation, as Resend does it ---------------------------------------------------------


def _validate(path: str, payload: Any) -> list[dict[str, Any]]:
    if path == "/emails":
        if not isinstance(payload, dict):
            raise _ApiError(422, "validation_error", "The request body must be a JSON object.")
        _validate_email(payload, "", batch=False)
        return [payload]
    if not isinstance(payload, list) or not payload:
        raise _ApiError(422, "validation_error", "The request body must be an array of emails.")
    if len(payload) > MAX_BATCH:
        raise _ApiError(
            422,
            "validation_error",
            f"Too many emails in the batch: {len(payload)} (at most {MAX_BATCH}).",
        )
    for index, email in enumerate(payload):
        if not isinstance(email, dict):
            raise _ApiError(422, "validation_error", f"emails[{index}] must be an object.")
        _validate_email(email, f"emails[{index}].", batch=True)
    return list(payload)


def _validate_email(email: dict[str, Any], where: str, *, batch: bool) -> None:
    label = f"{where[:-1]}: " if where else ""  # "emails[3]: " in a batch
    for name in ("from", "to", "subject"):
        if email.get(name) in (None, "", []):
            raise _ApiError(422, "missing_required_field", f"Missing `{where}{name}` field.")
    if not isinstance(email["from"], str) or not _is_address(email["from"]):
        raise _ApiError(422, "validation_error", label + _BAD_ADDRESS.format(field="from"))
    to = email["to"]
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise _ApiError(422, "validation_error", f"`{where}to` must be a string or an array.")
    if len(recipients) > MAX_RECIPIENTS:
        raise _ApiError(
            422, "validation_error", f"`{where}to` has more than {MAX_RECIPIENTS} recipients."
        )
    if not all(_is_address(r) for r in recipients):
        raise _ApiError(422, "validation_error", label + _BAD_ADDRESS.format(field="to"))
    if not isinstance(email["subject"], str):
        raise _ApiError(422, "validation_error", f"`{where}subject` must be a string.")
    reply_to = email.get("reply_to")
    if reply_to is not None:
        replies = [reply_to] if isinstance(reply_to, str) else reply_to
        if not (
            isinstance(replies, list)
            and all(isinstance(r, str) and _is_address(r) for r in replies)
        ):
            raise _ApiError(422, "validation_error", label + _BAD_ADDRESS.format(field="reply_to"))
    if not any(isinstance(email.get(k), str) and email.get(k) for k in ("html", "text")):
        raise _ApiError(422, "missing_required_field", f"Missing `{where}html` or `text` field.")
    headers = email.get("headers")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        and not any("\r" in v or "\n" in v for v in headers.values())
    ):
        raise _ApiError(422, "validation_error", f"`{where}headers` must map names to strings.")
    tags = email.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
            raise _ApiError(422, "validation_error", f"`{where}tags` must be an array.")
        for tag in tags:
            name, value = tag.get("name"), tag.get("value", "x")
            if not (isinstance(name, str) and _TAG.match(name)) or not (
                isinstance(value, str) and _TAG.match(value)
            ):
                raise _ApiError(
                    422,
                    "validation_error",
                    f"`{where}tags`: names and values can only contain ASCII letters, "
                    "numbers, underscores or dashes.",
                )
    if batch and ("attachments" in email or "scheduled_at" in email):
        raise _ApiError(
            422, "validation_error", "Attachments and scheduled_at are not supported in batch."
        )


def _is_address(value: str) -> bool:
    named = _NAMED.match(value.strip())
    address = named.group(1) if named else value.strip()
    return bool(_ADDRESS.match(address))


def _bearer(header: str | None) -> str:
    if not header:
        return ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _error(status: int, name: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "name": name, "message": message}


@contextmanager
def running_fake(**options: Any) -> Iterator[FakeResendAPI]:
    """A started fake, stopped afterwards: `with running_fake(rate_limit=None) as fake:`."""
    fake = FakeResendAPI(**options).start()
    try:
        yield fake
    finally:
        fake.stop()
