"""`POST /webhook/calcom-booking`: Cal.com booking webhooks.

Cal.com signs the raw body: `X-Cal-Signature-256` is the hex HMAC-SHA256 of it under
the webhook's secret. The body looks like::

    {"triggerEvent": "BOOKING_CREATED", "createdAt": "...",
     "payload": {"uid": "...", "startTime": "2025-12-02T15:00:00Z", "endTime": "...",
                 "attendees": [{"email": "...", "name": "...", "timeZone": "..."}],
                 "organizer": {...}, "metadata": {"videoCallUrl": "..."},
                 "rescheduleUid": "..." (reschedules only), ...}}

The first attendee is the booker, i.e. the contact. In a reschedule `uid` and
`startTime` are the new booking and start, `rescheduleUid` the old booking.

Without `CALCOM_WEBHOOK_SECRET` only unsigned posts from loopback that came through no
proxy (no `X-Forwarded-For`, `Forwarded` or `X-Real-IP`) are taken: local development.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.core.bookings import parse_webhook
from xmas_pipeline.intake.http import (
    Reject,
    check_json_content_type,
    direct_from_loopback,
    parse_json,
    read_body,
)
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings

PATH = "/webhook/calcom-booking"
SIGNATURE_HEADER = "x-cal-signature-256"
STORED_TRIGGERS = frozenset({"BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED"})
UNSIGNED_REFUSED = (
    "CALCOM_WEBHOOK_SECRET is not set: unsigned webhooks are accepted only from this machine"
    " directly, not through a proxy"
)


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    if not header:
        return False
    given = header.strip().lower().encode("latin-1", "replace")
    return hmac.compare_digest(given, sign(body, secret).encode("ascii"))


def booking_problem(data: dict[str, Any]) -> str | None:
    """Why a stored trigger's body is unusable, or None when it is fine.

    The check is the pipeline's own parser, so whatever is acknowledged here can be
    ingested later; on top of it a cancellation must name its attendee.
    """
    try:
        event = parse_webhook(data, received_at=datetime.now(UTC))
    except ValueError as exc:  # pydantic's ValidationError included
        return (str(exc).splitlines() or ["invalid booking"])[0][:200]
    if event is None:
        return "not a booking event"
    if not event.email:
        return "attendees[0].email: missing"
    return None


class CalcomEndpoint:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store

    async def post(self, request: Request) -> Response:
        body = await read_body(request, self.settings.intake_max_body_bytes)
        secret = self.settings.reveal("calcom_webhook_secret")
        # Checked for every trigger, PING included, before anything is parsed.
        if secret:
            if not signature_ok(body, request.headers.get(SIGNATURE_HEADER), secret):
                raise Reject(401, "missing or wrong X-Cal-Signature-256")
        elif not direct_from_loopback(request):
            # Unsigned bookings would let anyone book, move or cancel anyone's reminders:
            # only a local test sender (no proxy in between) may skip the signature.
            raise Reject(401, UNSIGNED_REFUSED)
        check_json_content_type(request)
        data = parse_json(body)
        if not isinstance(data, dict) or not isinstance(data.get("triggerEvent"), str):
            raise Reject(400, "triggerEvent missing")
        trigger = data["triggerEvent"]
        if trigger not in STORED_TRIGGERS:  # PING, MEETING_ENDED, ...
            return JSONResponse({"status": "ignored", "triggerEvent": trigger[:64]})
        problem = booking_problem(data)
        if problem:
            raise Reject(400, problem)
        item = await self.store.put("bookings", body)
        return JSONResponse(
            {
                "status": "accepted",
                "triggerEvent": trigger,
                "uid": data["payload"]["uid"],
                "event_id": item.name.removesuffix(".json"),
            }
        )
