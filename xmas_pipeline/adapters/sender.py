"""The email-sender interface: Resend in production, the outbox folder locally."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # `<campaign>/<contact key>/<step>[/<booking uid>]`
    idempotency_key: str  # the message id, or a fresh key for a forced re-send
    to: str
    from_email: str
    subject: str  # single line: checked before it gets here
    html: str
    text: str
    tags: dict[str, str] = field(default_factory=dict)  # campaign, step, segment
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, ...


@dataclass(frozen=True)
class SendResult:
    message_id: str
    idempotency_key: str
    status: str  # "sent" | "failed" (permanent, e.g. bad address) | "retry" (try next run)
    provider_id: str = ""
    error: str = ""


class SenderQuotaExceeded(RuntimeError):
    """The provider's daily/monthly quota is used up: stop the run cleanly.

    `results` holds what was settled before the quota hit, so their status is still
    written back.
    """

    def __init__(self, message: str, results: list[SendResult]) -> None:
        super().__init__(message)
        self.results = results


@runtime_checkable
class EmailSender(Protocol):
    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        """Send each email at most once per idempotency key; one result per email, in order."""
