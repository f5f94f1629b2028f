"""The Resend sender: the real resend SDK against the in-process fake of the Resend API."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import resend

from xmas_pipeline.adapters.ratelimit import RateLimiter
from xmas_pipeline.adapters.resend_params import (
    MAX_KEY_LENGTH,
    batch_key,
    local_problem,
    resend_tags,
)
from xmas_pipeline.adapters.resend_sender import ResendSender, SenderConfigError
from xmas_pipeline.core.ports import EmailSender, OutgoingEmail, SenderQuotaExceeded
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake

UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://example.org/unsubscribe?token=abc>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def email(n: int, *, to: str | None = None, subject: str | None = None) -> OutgoingEmail:
    message_id = f"christmas-2025/contact{n}@example.com/email-1"
    return OutgoingEmail(
        message_id=message_id,
        idempotency_key=message_id,
        to=to or f"contact{n}@example.com",
        from_email="BusOS <hello@example.com>",
        subject=subject or f"Your assessment, contact {n}",
        html=f"<p>Hello {n}</p>",
        text=f"Hello {n}",
        tags={"campaign": "christmas-2025", "step": "email-1", "segment": "CRITICAL"},
        headers=dict(UNSUBSCRIBE),
    )


class VirtualClock:
    """A clock that only moves when someone sleeps on it: records every wait."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self.now += seconds


def sender_for(fake: FakeResendAPI, **options: object) -> ResendSender:
    settings: dict[str, object] = {"rate_per_s": math.inf, "timeout_s": 5}
    settings.update(options)
    return ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, **settings)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FakeResendAPI]:
    with running_fake(rate_limit=None) as running:
        yield running


# -- sending -------------------------------------------------------------------------------


def test_single_send_records_the_resend_id_headers_and_tags(fake: FakeResendAPI) -> None:
    with sender_for(fake, use_batch=False) as sender:
        assert isinstance(sender, EmailSender)
        [result] = sender.send([email(1)])

    [accepted] = fake.accepted
    assert result.status == "sent"
    assert result.provider_id == accepted.id
    assert accepted.endpoint == "/emails"
    assert accepted.idempotency_key == "christmas-2025/contact1@example.com/email-1"
    assert accepted.to == ["contact1@example.com"]
    assert accepted.headers == UNSUBSCRIBE
    assert accepted.tags == {"campaign": "christmas-2025", "step": "email-1", "segment": "CRITICAL"}


def test_batch_send_returns_ids_in_order(fake: FakeResendAPI) -> None:
    emails = [email(n) for n in range(5)]
    with sender_for(fake) as sender:
        results = sender.send(emails)

    assert [r.status for r in results] == ["sent"] * 5
    assert [r.message_id for r in results] == [e.message_id for e in emails]
    assert [r.provider_id for r in results] == [a.id for a in fake.accepted]
    assert [a.to[0] for a in fake.accepted] == [e.to for e in emails]
    [request] = fake.requests
    assert request.path == "/emails/batch"
    assert request.idempotency_key == batch_key([e.idempotency_key for e in emails])
    assert all(a.headers == UNSUBSCRIBE for a in fake.accepted)


@pytest.mark.parametrize("use_batch", [True, False])
def test_sending_the_same_emails_again_sends_nothing_new(
    fake: FakeResendAPI, use_batch: bool
) -> None:
    emails = [email(n) for n in range(3)]
    with sender_for(fake, use_batch=use_batch) as sender:
        first = sender.send(emails)
        again = sender.send(emails)

    assert [r.provider_id for r in again] == [r.provider_id for r in first]
    assert len(fake.accepted) == 3
    assert fake.deliveries() == {e.to: 1 for e in emails}


def test_250_emails_go_in_batches_of_at_most_100(fake: FakeResendAPI) -> None:
    emails = [email(n) for n in range(250)]
    with sender_for(fake) as sender:
        results = sender.send(emails)

    assert {r.status for r in results} == {"sent"}
    batches = [r for r in fake.requests if r.path == "/emails/batch"]
    sizes = [sum(a.idempotency_key == b.idempotency_key for a in fake.accepted) for b in batches]
    assert sizes == [100, 100, 50]
    assert fake.deliveries() == {e.to: 1 for e in emails}


def test_a_bad_address_in_a_batch_fails_only_that_email(fake: FakeResendAPI) -> None:
    emails = [email(n) for n in range(6)]
    emails[3] = email(3, to="not-an-address")
    with sender_for(fake) as sender:
        results = sender.send(emails)

    assert [r.status for r in results] == ["sent", "sent", "sent", "failed", "sent", "sent"]
    assert "422 validation_error" in results[3].error and "`to`" in results[3].error
    assert fake.requests[0].status == 422  # the strict batch was refused as a whole...
    assert fake.deliveries() == {e.to: 1 for i, e in enumerate(emails) if i != 3}  # ...then 1 by 1
    assert [r.provider_id for r in results if r.status == "sent"] == [a.id for a in fake.accepted]


def test_unsafe_or_odd_input_is_handled_before_sending(fake: FakeResendAPI) -> None:
    injected = email(1, subject="Hello\r\nBcc: victim@example.org")
    odd_tags = replace(email(2), tags={"campaign": "Christmas 2025", "who": "jane@x.com"})
    long_key = replace(email(3), idempotency_key="k/" + "x" * 300)
    with sender_for(fake) as sender:
        results = sender.send([injected, odd_tags, long_key])

    assert results[0].status == "failed" and "line break" in results[0].error
    assert [r.status for r in results[1:]] == ["sent", "sent"]
    assert fake.deliveries() == {"contact2@example.com": 1, "contact3@example.com": 1}
    by_to = {a.to[0]: a for a in fake.accepted}
    # Tag values Resend refuses are cleaned; an address is never a tag.
    assert by_to["contact2@example.com"].tags == {"campaign": "Christmas_2025"}
    assert results[2].idempotency_key == long_key.idempotency_key  # reported as given


def test_tag_and_header_rules() -> None:
    assert resend_tags({"campaign": "Christmas 2025", "step": "email-3", "x": "a@b.c"}) == [
        {"name": "campaign", "value": "Christmas_2025"},
        {"name": "step", "value": "email-3"},
    ]
    assert local_problem(email(1)) == ""
    bad_header = replace(email(1), headers={"X-A": "b\nInjected: 1"})
    assert "line break" in local_problem(bad_header)
    bad_name = replace(email(1), headers={"Bad Name": "v"})
    assert "invalid header name" in local_problem(bad_name)
    assert len(batch_key(["a"] * 100)) <= MAX_KEY_LENGTH


def test_same_key_with_different_content_counts_as_already_sent(fake: FakeResendAPI) -> None:
    with sender_for(fake, use_batch=False) as sender:
        [first] = sender.send([email(1)])
        [changed] = sender.send([email(1, subject="A different subject")])

    assert first.status == "sent"
    # The key was accepted before: the message went out, and is not sent again.
    assert changed.status == "sent" and changed.provider_id == ""
    assert "invalid_idempotent_request" in changed.error and "already accepted" in changed.error
    assert len(fake.accepted) == 1
    assert fake.count(409) == 1  # not retried


# -- limits and faults ----------------------------------------------------------------------


def test_429_waits_for_retry_after() -> None:
    clock = VirtualClock()
    with running_fake(rate_limit=None, clock=clock) as fake:
        fake.script(429, "rate_limit_exceeded", headers={"retry-after": "7"})
        with sender_for(fake, use_batch=False, sleep=clock.sleep, clock=clock) as sender:
            [result] = sender.send([email(1)])

    assert result.status == "sent"
    assert clock.waits == [7.0]
    assert [r.status for r in fake.requests] == [429, 200]


def test_paced_at_the_limit_no_429() -> None:
    clock = VirtualClock()  # shared: the fake refills its bucket as the client sleeps
    with (
        running_fake(rate_limit=2, window_s=1.0, clock=clock) as fake,
        sender_for(fake, use_batch=False, rate_per_s=2, sleep=clock.sleep, clock=clock) as s,
    ):
        results = s.send([email(n) for n in range(9)])

    assert {r.status for r in results} == {"sent"}
    assert fake.count(429) == 0
    assert clock.now - 1_000.0 == pytest.approx(8 / (2 * 0.95))  # 95% of the limit


def test_a_client_too_fast_honours_the_ratelimit_headers() -> None:
    clock = VirtualClock()
    with (
        running_fake(rate_limit=2, window_s=1.0, clock=clock) as fake,
        sender_for(fake, use_batch=False, rate_per_s=50, sleep=clock.sleep, clock=clock) as s,
    ):
        results = s.send([email(n) for n in range(6)])

    assert {r.status for r in results} == {"sent"}
    # `ratelimit-remaining: 0` with `ratelimit-reset: 1` makes it wait before asking again.
    assert fake.count(429) == 0
    assert len([w for w in clock.waits if w >= 0.9]) == 2  # after requests 2 and 4
    assert fake.deliveries() == {email(n).to: 1 for n in range(6)}


def test_the_fake_answers_429_with_retry_after_when_bursting() -> None:
    clock = VirtualClock()  # frozen unless someone sleeps: three requests at one instant
    saved = resend.api_key, resend.api_url
    with running_fake(rate_limit=2, window_s=1.0, clock=clock) as fake:
        resend.api_key, resend.api_url = DEFAULT_API_KEY, fake.base_url
        try:
            headers = [
                resend.Emails.send(
                    {"from": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t"}
                )["http_headers"]
                for _ in range(2)
            ]
            with pytest.raises(resend.exceptions.RateLimitError) as refused:
                resend.Emails.send(
                    {"from": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t"}
                )
        finally:
            resend.api_key, resend.api_url = saved

    assert [h["ratelimit-remaining"] for h in headers] == ["1", "0"]
    assert refused.value.headers["retry-after"] == "1"
    assert refused.value.error_type == "rate_limit_exceeded"


def test_the_fake_validates_as_resend_does(fake: FakeResendAPI) -> None:
    good: dict[str, object] = {
        "from": "BusOS <hello@example.com>",
        "to": ["a@example.com"],
        "subject": "s",
        "html": "<p>hi</p>",
    }
    saved = resend.api_key, resend.api_url
    resend.api_key, resend.api_url = DEFAULT_API_KEY, fake.base_url
    try:
        refusals = {
            "batch of 101": lambda: resend.Batch.send([good] * 101),
            "51 recipients": lambda: resend.Emails.send(
                {**good, "to": [f"r{i}@example.com" for i in range(51)]}
            ),
            "tag value": lambda: resend.Emails.send(
                {**good, "tags": [{"name": "who", "value": "a@b.c"}]}
            ),
            "bad from": lambda: resend.Emails.send({**good, "from": "BusOS"}),
            "no subject": lambda: resend.Emails.send({**good, "subject": ""}),
        }
        names: dict[str, tuple[object, str]] = {}
        for what, call in refusals.items():
            with pytest.raises(resend.exceptions.ResendError) as refused:
                call()
            names[what] = (refused.value.code, refused.value.error_type)
        resend.api_key = "re_not_the_key"
        with pytest.raises(resend.exceptions.InvalidApiKeyError):
            resend.Emails.send(good)
    finally:
        resend.api_key, resend.api_url = saved

    assert names == {
        "batch of 101": (422, "validation_error"),
        "51 recipients": (422, "validation_error"),
        "tag value": (422, "validation_error"),
        "bad from": (422, "validation_error"),
        "no subject": (422, "missing_required_field"),
    }
    assert fake.accepted == []


def test_409_concurrent_request_is_retried_until_the_first_finishes(fake: FakeResendAPI) -> None:
    fake.hold_next(1)  # the first request is accepted, then its reply never comes
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if fake.count(409, "concurrent_idempotent_requests"):
            fake.release()  # the first request finishes while the client backs off

    with sender_for(fake, use_batch=False, timeout_s=0.3, sleep=sleep) as sender:
        [result] = sender.send([email(1)])

    assert [(r.status, r.name) for r in fake.requests] == [
        (0, "held"),
        (409, "concurrent_idempotent_requests"),
        (200, ""),
    ]
    [accepted] = fake.accepted
    assert result.status == "sent" and result.provider_id == accepted.id
    assert len(waits) == 2


def test_when_retries_run_out_the_email_stays_due_and_is_not_sent_twice(
    fake: FakeResendAPI,
) -> None:
    fake.fault_rate, fake.fault_kinds = 1.0, ("drop",)  # accepted, then the reply is lost
    clock = VirtualClock()
    with sender_for(fake, use_batch=False, max_attempts=3, sleep=clock.sleep, clock=clock) as s:
        [lost] = s.send([email(1)])
        assert lost.status == "retry" and "gave up after 3 attempts" in lost.error
        assert len(clock.waits) == 2  # backed off between attempts
        fake.fault_rate = 0.0
        [healed] = s.send([email(1)])  # the next run: same key, deduplicated

    [accepted] = fake.accepted
    assert healed.status == "sent" and healed.provider_id == accepted.id


def test_5xx_gives_up_after_max_attempts(fake: FakeResendAPI) -> None:
    fake.fault_rate, fake.fault_kinds = 1.0, ("500",)
    clock = VirtualClock()
    with sender_for(fake, max_attempts=4, sleep=clock.sleep, clock=clock) as sender:
        results = sender.send([email(1), email(2)])

    assert [r.status for r in results] == ["retry", "retry"]
    assert "500 application_error" in results[0].error
    assert fake.request_count == 4 and fake.accepted == []
    assert clock.waits == sorted(clock.waits)  # exponential backoff (with jitter)


@pytest.mark.parametrize("use_batch", [True, False])
def test_quota_stops_the_run_with_the_results_so_far(use_batch: bool) -> None:
    emails = [email(n) for n in range(250 if use_batch else 5)]
    with (
        running_fake(rate_limit=None, daily_quota=150 if use_batch else 3) as fake,
        sender_for(fake, use_batch=use_batch) as sender,
        pytest.raises(SenderQuotaExceeded) as stopped,
    ):
        sender.send(emails)

    settled = stopped.value.results
    assert len(settled) == (100 if use_batch else 3)
    assert {r.status for r in settled} == {"sent"}
    assert [r.message_id for r in settled] == [e.message_id for e in emails[: len(settled)]]
    assert "quota" in str(stopped.value) and "daily_quota_exceeded" in str(stopped.value)
    assert "stay due" in str(stopped.value)
    assert fake.count(429, "daily_quota_exceeded") == 1  # not retried


def test_a_refused_api_key_stops_the_run_and_never_leaks(
    fake: FakeResendAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "re_wrong_secret_key_123"
    sender = ResendSender(secret, base_url=fake.base_url, rate_per_s=math.inf)
    with pytest.raises(SenderConfigError) as stopped:
        sender.send([email(1), email(2)])
    sender.close()

    assert "403 invalid_api_key" in str(stopped.value)
    assert stopped.value.results == []
    assert fake.request_count == 1
    assert secret not in str(stopped.value) and secret not in repr(sender)
    assert secret not in caplog.text


def test_a_wrong_api_url_stops_the_run_instead_of_failing_every_message(
    fake: FakeResendAPI,
) -> None:
    with (
        ResendSender(DEFAULT_API_KEY, base_url=fake.base_url + "/v0", rate_per_s=math.inf) as s,
        pytest.raises(SenderConfigError) as stopped,
    ):
        s.send([email(1), email(2)])

    assert "404 not_found" in str(stopped.value)
    assert stopped.value.results == [] and fake.accepted == []


def test_network_errors_are_retried_and_reported_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_fake() as fake:
        closed_url = fake.base_url  # nothing listens there once the fake stops
    clock = VirtualClock()
    secret = "re_live_secret_456"
    with ResendSender(
        secret, base_url=closed_url, max_attempts=2, sleep=clock.sleep, clock=clock
    ) as sender:
        [result] = sender.send([email(1)])

    assert result.status == "retry" and "network: connection failed" in result.error
    assert secret not in result.error and secret not in caplog.text


def test_sdk_globals_are_restored_after_each_call(fake: FakeResendAPI) -> None:
    saved = resend.api_key, resend.api_url
    resend.api_key, resend.api_url = "someone-else", "https://elsewhere.invalid"
    try:
        with sender_for(fake) as sender:
            sender.send([email(1)])
        assert (resend.api_key, resend.api_url) == ("someone-else", "https://elsewhere.invalid")
    finally:
        resend.api_key, resend.api_url = saved


@pytest.mark.parametrize("use_batch", [True, False])
def test_with_20_percent_of_calls_failing_every_email_is_sent_exactly_once(
    use_batch: bool,
) -> None:
    emails = [email(n) for n in range(200)]
    # A client clock 20x faster than real time: Retry-After 1 s is 0.05 s here. The fake
    # holds "timeout" replies 0.3 s (real), past the client's 0.15 s timeout.
    scale = 20.0

    def fast_clock() -> float:
        return time.monotonic() * scale

    def fast_sleep(seconds: float) -> None:
        time.sleep(seconds / scale)

    with (
        running_fake(
            rate_limit=None,
            fault_rate=0.2,
            fault_kinds=("500", "429", "timeout"),
            seed=11,  # its first 20 draws hold all three kinds
            hang_s=0.3,
        ) as fake,
        sender_for(
            fake,
            use_batch=use_batch,
            batch_size=10,
            timeout_s=0.15,
            sleep=fast_sleep,
            clock=fast_clock,
        ) as sender,
    ):
        results = {r.message_id: r for r in sender.send(emails)}
        for _ in range(5):  # later runs: only what is still due
            due = [e for e in emails if results[e.message_id].status == "retry"]
            if not due:
                break
            results.update({r.message_id: r for r in sender.send(due)})

    faults = {r.name for r in fake.requests if r.name.startswith("fault:")}
    assert faults == {"fault:500", "fault:429", "fault:timeout"}
    assert {r.status for r in results.values()} == {"sent"}  # never "failed"
    assert fake.deliveries() == {e.to: 1 for e in emails}  # exactly once
    ids = {a.to[0]: a.id for a in fake.accepted}
    assert all(results[e.message_id].provider_id == ids[e.to] for e in emails)


def test_rate_limiter_spaces_and_pauses() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(2.0, burst=2, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.0, 0.5, 0.5]
    limiter.pause_until(clock.now + 3)
    assert limiter.acquire() == pytest.approx(3.0)
    assert limiter.acquire() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        RateLimiter(0)
