"""A batch Resend refuses is not everyone's error: the sender finds the emails at fault and
fails only those, with Resend's reason; a refusal of what every email carries (the
sender, the reply-to) stops the run with the reason and leaves every email due. Against
the fake, which validates batches strictly (one bad email refuses the whole batch)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from xmas_pipeline.adapters.resend_sender import ResendSender, SenderConfigError
from xmas_pipeline.core.ports import OutgoingEmail
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake

GENERIC = "The request could not be processed."  # a refusal naming no field


def email(n: int, *, to: str | None = None, reply_to: str = "") -> OutgoingEmail:
    message_id = f"christmas-2025/contact{n}@example.com/email-1"
    return OutgoingEmail(
        message_id=message_id,
        idempotency_key=message_id,
        to=to or f"contact{n}@example.com",
        from_email="BusOS <hello@example.com>",
        subject=f"Your assessment, contact {n}",
        html=f"<p>Hello {n}</p>",
        text=f"Hello {n}",
        reply_to=reply_to,
    )


@pytest.fixture
def fake() -> Iterator[FakeResendAPI]:
    with running_fake(rate_limit=None) as running:
        yield running


def sender_for(fake: FakeResendAPI, **options: object) -> ResendSender:
    settings: dict[str, object] = {"rate_per_s": 10_000, "timeout_s": 5}
    settings.update(options)
    return ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 37, 99])
def test_one_bad_address_in_a_batch_of_100_fails_alone_with_the_reason(
    fake: FakeResendAPI, bad: int
) -> None:
    emails = [email(n) for n in range(100)]
    emails[bad] = email(bad, to="jane@example.c")  # passes a signup's check, not Resend's
    with sender_for(fake) as sender:
        results = sender.send(emails)

    statuses = [r.status for r in results]
    assert statuses.count("sent") == 99 and statuses[bad] == "failed"
    assert results[bad].error.startswith("422 validation_error: Invalid `to` field")
    assert fake.deliveries() == {e.to: 1 for i, e in enumerate(emails) if i != bad}
    # The batch is searched in halves: far fewer requests than one per email (101).
    assert fake.requests[0].status == 422 and fake.request_count <= 18


def test_a_reply_to_resend_refuses_stops_the_run_and_ends_nothing(fake: FakeResendAPI) -> None:
    emails = [email(n, reply_to="sam@busos.x") for n in range(100)]
    with sender_for(fake) as sender, pytest.raises(SenderConfigError) as caught:
        sender.send(emails)

    assert caught.value.results == []  # nothing settled: every email stays due
    message = str(caught.value)
    assert "reply-to" in message and "Invalid `reply_to` field" in message
    assert "the rest stay due" in message
    assert fake.accepted == [] and fake.request_count == 1


@pytest.mark.parametrize("use_batch", [True, False])
def test_a_lone_email_with_a_refused_reply_to_stops_too(
    fake: FakeResendAPI, use_batch: bool
) -> None:
    with sender_for(fake, use_batch=use_batch) as sender, pytest.raises(SenderConfigError):
        sender.send([email(1, reply_to="sam@busos.x")])
    assert fake.accepted == []


@pytest.mark.parametrize("size", [2, 5])
def test_every_email_refused_alone_for_one_reason_is_the_setup(
    fake: FakeResendAPI, size: int
) -> None:
    """A refusal that names no field: the batch, then each email alone, all refused for the
    same reason. That is the request's setup, not the emails: stop, end nothing."""
    fake.script(422, "validation_error", GENERIC, times=size + 1)
    with sender_for(fake) as sender, pytest.raises(SenderConfigError) as caught:
        sender.send([email(n) for n in range(size)])
    assert caught.value.results == []
    assert f"each of the {size} emails" in str(caught.value) and GENERIC in str(caught.value)
    assert fake.request_count == size + 1 and fake.accepted == []


def test_a_lone_email_refused_for_a_reason_naming_no_field_fails(fake: FakeResendAPI) -> None:
    """One email alone cannot tell its own fault from the setup's: it fails, as before."""
    fake.script(422, "validation_error", GENERIC)
    with sender_for(fake) as sender:
        [result] = sender.send([email(1)])
    assert result.status == "failed" and GENERIC in result.error


@pytest.mark.parametrize("bad", [[0], [1], [0, 1]])
def test_a_batch_of_two(fake: FakeResendAPI, bad: list[int]) -> None:
    """Two bad recipients are two faults, not the setup: Resend blames the `to` field."""
    emails = [email(n, to="x@example.c" if n in bad else None) for n in range(2)]
    with sender_for(fake) as sender:
        results = sender.send(emails)
    assert [r.status for r in results] == ["failed" if n in bad else "sent" for n in range(2)]
    assert all("`to`" in results[n].error for n in bad)
    assert fake.request_count <= 3


def test_refused_with_some_fates_unknown_everyone_stays_due(fake: FakeResendAPI) -> None:
    """Refused alone for one reason, but one email's request gave up (a 500): the evidence is
    incomplete, so nothing fails and nothing stops; the next run decides."""
    fake.script(422, "validation_error", GENERIC, times=2)  # the batch, then email 0
    fake.script(500, "application_error", "boom")  # email 1: retries run out
    fake.script(422, "validation_error", GENERIC)  # email 2
    with sender_for(fake, max_attempts=1) as sender:
        results = sender.send([email(n) for n in range(3)])
    assert [r.status for r in results] == ["retry"] * 3
    assert GENERIC in results[0].error and GENERIC in results[2].error


def test_a_setup_refusal_in_a_later_batch_keeps_what_went_before(fake: FakeResendAPI) -> None:
    emails = [email(n, reply_to="" if n < 100 else "sam@busos.x") for n in range(250)]
    with sender_for(fake) as sender, pytest.raises(SenderConfigError) as caught:
        sender.send(emails)
    settled = caught.value.results
    assert [r.status for r in settled] == ["sent"] * 100
    assert len(fake.accepted) == 100 and "100 of 250 emails were sent" in str(caught.value)


def test_bad_recipients_and_a_sound_batch_cost_few_requests(fake: FakeResendAPI) -> None:
    emails = [email(n) for n in range(100)]
    for n in (3, 50, 51, 97):
        emails[n] = replace(emails[n], to=f"bad{n}@example.c")
    with sender_for(fake) as sender:
        results = sender.send(emails)
    assert [n for n, r in enumerate(results) if r.status == "failed"] == [3, 50, 51, 97]
    assert sum(r.status == "sent" for r in results) == 96
    assert fake.request_count <= 50  # one by one: 101
