"""The Resend email sender: the resend SDK over an HTTP client with timeouts.

How it keeps each message exactly once (docs/architecture.md, "Exactly once"):
- A single send carries the message's idempotency key (its message id) as
  `Idempotency-Key`; Resend answers a repeat within 24 h with the original response.
- A batch (at most 100 emails) carries one key for the whole call: a hash of its emails'
  keys, so re-sending the *same* chunk is deduplicated. A chunk with a different set of
  emails gets a different key, so only an identical chunk is deduplicated across runs
  (`use_batch=False` gives per-message deduplication at one request per email).
- Every retry of a request reuses its key, so retrying timeouts and 5xx is safe: if the
  first attempt was accepted, the retry gets the same email ids back, not a second email.
- A message is reported "sent" only with the id Resend returned for it; when retries run
  out it is reported "retry" (it stays due), never "sent".
- A batch Resend refuses (strict validation: one bad email refuses all, nothing is sent)
  is searched for the emails at fault, and only they fail; a refusal of what every email
  carries (the sender, the reply-to) stops the run instead (`_refused_batch`, `_judge`).

The SDK is configured through module globals (`resend.api_key`, `resend.api_url`,
`resend.default_http_client`); each call sets them under a lock and restores them, so two
senders (say, a test's and the app's) never see each other's key or server.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, cast

import resend
from resend.exceptions import ResendError

from xmas_pipeline.adapters.ratelimit import RateLimiter
from xmas_pipeline.adapters.resend_http import HttpxClient
from xmas_pipeline.adapters.resend_params import (
    MESSAGE,
    SETUP,
    batch_key,
    describe,
    local_problem,
    provider_key,
    refusal_blames,
    status_code,
    to_params,
)
from xmas_pipeline.core.ports import OutgoingEmail, SenderQuotaExceeded, SendResult

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.resend.com"
MAX_BATCH = 100  # Resend's limit for POST /emails/batch
PACE = 0.95  # pace a little under the limit so scheduling jitter never drains the window

_QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
_AUTH_ERRORS = frozenset({"missing_api_key", "invalid_api_key", "restricted_api_key"})
_MESSAGE_ERRORS = frozenset({400, 413, 422})  # this message is wrong (a bad address, ...)

# The SDK reads its configuration from module globals at request time.
_SDK_LOCK = threading.Lock()


class SenderConfigError(SenderQuotaExceeded):
    """Resend refused the account, API key, sender domain (401/403) or URL (404): stop.

    Nothing more can be sent until the configuration is fixed, so this stops the run like
    a quota error does (the unsent messages stay due) instead of failing every message.
    """


class _Stop(Exception):
    def __init__(self, reason: str, *, config: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.config = config


@dataclass(frozen=True)
class _Reply:
    """How one request ended after its retries."""

    kind: str  # "ok" | "rejected" (permanent 4xx) | "conflict" (key reused) | "gave_up"
    body: Mapping[str, Any] | None = None
    reason: str = ""
    # "gave_up" only: an attempt may have been taken (a timeout, a 5xx, a lost answer),
    # so the request must be repeated exactly as it was; False after refusals only (429).
    unknown: bool = False


class ResendSender:
    """`EmailSender` over Resend: batches of up to 100, idempotent, rate limited."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        rate_per_s: float = 2.0,
        max_attempts: int = 5,
        timeout_s: float = 15,
        use_batch: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        *,
        batch_size: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_wait_s: float = 60.0,
    ) -> None:
        if not api_key:
            raise ValueError("a Resend API key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._api_key = api_key
        self.base_url = (base_url or os.environ.get("RESEND_API_URL") or DEFAULT_API_URL).rstrip(
            "/"
        )
        self.use_batch = use_batch
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.max_attempts = max_attempts
        self.requests = 0  # HTTP requests made, for reports and benchmarks
        self._sleep = sleep
        self._clock = clock
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._max_wait_s = max_wait_s  # a longer Retry-After gives up (the email stays due)
        self._random = random.Random()
        self._limiter = RateLimiter(rate_per_s * PACE, clock=clock, sleep=sleep)
        self._http = HttpxClient(timeout_s)

    def __repr__(self) -> str:  # never the key
        return f"ResendSender(base_url={self.base_url!r}, use_batch={self.use_batch})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ResendSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the EmailSender interface -------------------------------------------------------

    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(emails)
        for index, email in enumerate(emails):
            problem = local_problem(email)
            if problem:
                results[index] = _failed(email, problem)
        pending = [i for i, result in enumerate(results) if result is None]
        try:
            if self.use_batch:
                for chunk in _chunks(pending, self.batch_size):
                    self._send_chunk(emails, chunk, results)
            else:
                for index in pending:
                    self._send_chunk(emails, [index], results)
        except _Stop as stop:
            # The settled prefix, in order, so the caller can write their status back.
            settled: list[SendResult] = []
            for result in results:
                if result is None:
                    break
                settled.append(result)
            sent = sum(r.status == "sent" for r in results if r is not None)
            message = (
                f"{stop.reason}; {sent} of {len(emails)} emails were sent before it, "
                "the rest stay due for the next run"
            )
            error = SenderConfigError if stop.config else SenderQuotaExceeded
            raise error(message, settled) from None
        return [cast(SendResult, result) for result in results]

    # -- batches and single sends --------------------------------------------------------

    def _send_chunk(
        self, emails: Sequence[OutgoingEmail], chunk: list[int], results: list[SendResult | None]
    ) -> None:
        if len(chunk) == 1:  # the message's own key dedupes better than a batch key
            reply = self._send_one(emails[chunk[0]], chunk[0], results)
            if reply.kind == "rejected":
                self._judge(emails, chunk, {chunk[0]: reply.reason}, results)
            return
        reply = self._send_batch(emails, chunk, results)
        if reply.kind == "rejected":
            self._refused_batch(emails, chunk, reply.reason, results)

    def _refused_batch(
        self,
        emails: Sequence[OutgoingEmail],
        chunk: list[int],
        reason: str,
        results: list[SendResult | None],
    ) -> None:
        """Strict validation refused the whole batch (nothing of it was sent): find the
        emails at fault without ending anyone else's sequence.

        A reason naming the sender or the reply-to blames what every email carries: stop.
        Otherwise the emails go alone, in order, until one is accepted, which clears the
        request's setup; the rest is then split in halves until the refused ones are found
        (one bad address in 100 costs about 15 requests). When none is accepted alone,
        `_judge` decides between the emails and the setup.
        """
        log.warning("batch of %d refused (%s); finding the emails at fault", len(chunk), reason)
        group = [emails[i] for i in chunk]
        if refusal_blames(reason, group) == SETUP:
            self._stop_for_setup(chunk, results, reason)
        refused: dict[int, str] = {}
        for position, index in enumerate(chunk):
            reply = self._send_one(emails[index], index, results)
            if reply.kind in ("ok", "conflict"):  # accepted: the setup is fine
                for i, why in refused.items():
                    results[i] = _failed(emails[i], why)
                self._split(emails, chunk[position + 1 :], results)
                return
            if reply.kind == "rejected":
                refused[index] = reply.reason
                if refusal_blames(reply.reason, group) == SETUP:
                    self._stop_for_setup(chunk, results, reply.reason)
        self._judge(emails, chunk, refused, results)

    def _judge(
        self,
        emails: Sequence[OutgoingEmail],
        chunk: list[int],
        refused: dict[int, str],
        results: list[SendResult | None],
    ) -> None:
        """No email of `chunk` was accepted; `refused` holds those Resend refused alone.

        Several refused for one same reason, none blaming its own recipient, is the
        request's setup (the sender, the reply-to), not the emails: stop, every one due. If
        some fates are unknown (retries ran out), all stay due and the next run, which sends
        this chunk again, decides. Otherwise, and for a lone email, each refused one fails
        with its reason (a lone refusal cannot tell the two apart unless it names a field).
        """
        group = [emails[i] for i in chunk]
        reasons = set(refused.values())
        for why in sorted(reasons):
            if refusal_blames(why, group) == SETUP:
                self._stop_for_setup(chunk, results, why)
        if len(chunk) > 1 and len(reasons) == 1:
            [reason] = reasons
            if refusal_blames(reason, group) != MESSAGE:
                if len(refused) == len(chunk):
                    self._stop_for_setup(chunk, results, reason, every=len(chunk))
                for i in refused:
                    why = f"refused with the rest of its batch: {reason}"
                    results[i] = _retry(emails[i], why, unknown=False)
                return
        for i, why in refused.items():
            results[i] = _failed(emails[i], why)

    def _stop_for_setup(
        self, chunk: list[int], results: list[SendResult | None], reason: str, every: int = 0
    ) -> NoReturn:
        for i in chunk:
            results[i] = None  # not accepted: the next run renders and chunks them anew
        what = (
            f"Resend refused each of the {every} emails of a batch, alone too, for one reason"
            if every
            else "Resend refused the sender or reply-to address that every email carries"
        )
        raise _Stop(f"{what} ({reason}): fix the setup", config=True)

    def _split(
        self, emails: Sequence[OutgoingEmail], chunk: list[int], results: list[SendResult | None]
    ) -> None:
        """Send `chunk` once the setup is known good: a refused part is halved until each
        refused email stands alone, and fails with its reason."""
        if len(chunk) == 1:
            reply = self._send_one(emails[chunk[0]], chunk[0], results)
            if reply.kind == "rejected":
                results[chunk[0]] = _failed(emails[chunk[0]], reply.reason)
        elif chunk and self._send_batch(emails, chunk, results).kind == "rejected":
            half = (len(chunk) + 1) // 2
            self._split(emails, chunk[:half], results)
            self._split(emails, chunk[half:], results)

    def _send_batch(
        self, emails: Sequence[OutgoingEmail], chunk: list[int], results: list[SendResult | None]
    ) -> _Reply:
        """POST one batch and record what it settled; a refusal is left to the caller."""
        keys = [provider_key(emails[i].idempotency_key) for i in chunk]
        reply = self._post("/emails/batch", [to_params(emails[i]) for i in chunk], batch_key(keys))
        if reply.kind == "ok":
            data = (reply.body or {}).get("data")
            ids = [str(item.get("id", "")) for item in data] if isinstance(data, list) else []
            if len(ids) != len(chunk) or not all(ids):
                reason = "Resend accepted the batch but did not return one id per email"
                for i in chunk:
                    results[i] = _retry(emails[i], reason, unknown=True)
            else:
                for i, provider_id in zip(chunk, ids, strict=True):
                    results[i] = _sent(emails[i], provider_id)
        elif reply.kind == "conflict":
            for i in chunk:
                results[i] = _already_sent(emails[i], reply.reason)
        elif reply.kind == "gave_up":
            for i in chunk:
                results[i] = _retry(emails[i], reply.reason, unknown=reply.unknown)
        return reply

    def _send_one(
        self, email: OutgoingEmail, index: int, results: list[SendResult | None]
    ) -> _Reply:
        """POST one email and record what it settled; a refusal is left to the caller."""
        reply = self._post("/emails", to_params(email), provider_key(email.idempotency_key))
        if reply.kind == "ok":
            provider_id = str((reply.body or {}).get("id") or "")
            if provider_id:
                results[index] = _sent(email, provider_id)
            else:
                reason = "Resend accepted the email but returned no id"
                results[index] = _retry(email, reason, unknown=True)
        elif reply.kind == "conflict":
            results[index] = _already_sent(email, reply.reason)
        elif reply.kind == "gave_up":
            results[index] = _retry(email, reply.reason, unknown=reply.unknown)
        return reply

    # -- one request with its retries ----------------------------------------------------

    def _post(self, path: str, params: Any, key: str) -> _Reply:
        last = ""
        unknown = False
        for attempt in range(1, self.max_attempts + 1):
            self._limiter.acquire()
            self.requests += 1
            try:
                body = self._call(path, params, key)
            except ResendError as exc:
                headers = _lower(exc.headers)
                self._observe(headers)
                code, name = status_code(exc), str(exc.error_type or "")
                reason = describe(exc)
                if name in _QUOTA_ERRORS:
                    raise _Stop(f"Resend quota used up ({reason})", config=False) from None
                if name == "invalid_idempotent_request":
                    return _Reply(
                        "conflict",
                        reason="not sent again: Resend already accepted this idempotency key "
                        "(with other content) in the last 24 h - " + reason,
                    )
                if code in _MESSAGE_ERRORS and name not in _AUTH_ERRORS:
                    return _Reply("rejected", reason=reason)
                if not _transient(code, name):
                    # 401/403 (key, account, sender domain), 404/405 (a wrong API URL) and
                    # anything unexpected: a setup problem, not a bad message. Failing every
                    # message would end every sequence, so the run stops instead.
                    raise _Stop(f"Resend refused the request ({reason})", config=True) from None
                last = reason
                unknown = unknown or _maybe_taken(code, name)
                if attempt == self.max_attempts:
                    break
                log.info("Resend %s: attempt %d failed (%s)", path, attempt, reason)
                if not self._wait_before_retry(code, headers, attempt):
                    why = f"Resend asked to wait too long: {reason}"
                    return _Reply("gave_up", reason=why, unknown=unknown)
                continue
            self._observe(_lower(body.get("http_headers")))
            return _Reply("ok", body=body)
        why = f"gave up after {self.max_attempts} attempts: {last}"
        return _Reply("gave_up", reason=why, unknown=unknown)

    def _call(self, path: str, params: Any, key: str) -> Mapping[str, Any]:
        options: dict[str, Any] = {"idempotency_key": key}
        with _SDK_LOCK:
            saved = (resend.api_key, resend.api_url, resend.default_http_client)
            resend.api_key = self._api_key
            resend.api_url = self.base_url
            resend.default_http_client = self._http
            try:
                if path == "/emails/batch":
                    response: Any = resend.Batch.send(params, cast(Any, options))
                else:
                    response = resend.Emails.send(params, cast(Any, options))
            finally:
                resend.api_key, resend.api_url, resend.default_http_client = saved
        return cast(Mapping[str, Any], response)

    def _observe(self, headers: Mapping[str, str]) -> None:
        """Honour the rate-limit headers: none left in the window means wait for its reset."""
        remaining = _seconds(headers.get("ratelimit-remaining"))
        reset = _seconds(headers.get("ratelimit-reset"))
        if remaining is not None and remaining <= 0 and reset:
            self._limiter.pause_until(self._clock() + min(reset, self._max_wait_s))

    def _wait_before_retry(self, code: int, headers: Mapping[str, str], attempt: int) -> bool:
        """Wait before the next attempt; False when the server wants a longer wait than allowed."""
        retry_after = _seconds(headers.get("retry-after"))
        if code == 429 and retry_after is None:
            retry_after = _seconds(headers.get("ratelimit-reset"))
        if retry_after is not None:
            if retry_after > self._max_wait_s:
                return False
            # The limiter waits for it, so every later request keeps the pause too.
            self._limiter.pause_until(self._clock() + retry_after)
            return True
        # Exponential backoff with jitter: 409 concurrent, 5xx and timeouts.
        ceiling = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
        self._sleep(ceiling * (0.5 + self._random.random() / 2))
        return True


# -- small helpers ---------------------------------------------------------------------------


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _maybe_taken(code: int, name: str) -> bool:
    """Whether a failed attempt may still have been accepted: a timeout or a dropped
    connection (the answer was lost; any network error counts, to be safe), a 5xx, or the
    same key still in flight (409). A 429 is answered before anything is sent."""
    if name == "HttpClientError":
        return True
    return code == 409 or code >= 500


def _transient(code: int, name: str) -> bool:
    if name == "HttpClientError":  # timeout, refused or dropped connection
        return True
    # 409 here is concurrent_idempotent_requests (the first request is still in flight).
    return code in (408, 409, 429) or code >= 500


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back to backoff
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _sent(email: OutgoingEmail, provider_id: str) -> SendResult:
    return SendResult(email.message_id, email.idempotency_key, "sent", provider_id=provider_id)


def _failed(email: OutgoingEmail, reason: str) -> SendResult:
    return SendResult(email.message_id, email.idempotency_key, "failed", error=reason)


def _already_sent(email: OutgoingEmail, reason: str) -> SendResult:
    # Only this message ever uses its key, so Resend holding the key means the message
    # went out earlier (its status write was lost). Counting it sent, with the reason,
    # is true; failing it would end the contact's sequence for an email they received.
    return SendResult(email.message_id, email.idempotency_key, "sent", error=reason)


def _retry(email: OutgoingEmail, reason: str, *, unknown: bool) -> SendResult:
    return SendResult(
        email.message_id, email.idempotency_key, "retry", error=reason, fate_unknown=unknown
    )
