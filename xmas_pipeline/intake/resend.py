"""`POST /webhook/resend`: Resend email events (delivered, bounced, complained...).

Resend signs through Svix: `svix-id`, `svix-timestamp` and `svix-signature` headers,
checked with the resend SDK's own verifier, which also refuses timestamps more than
five minutes off (replays of old deliveries). A delivery whose `svix-id` was already
stored, by this worker or any other (the ids are kept in the SQL store, see
`delivery_ids`), is answered 200 "duplicate" without a second file. The file is written
before the id is recorded, so nothing accepted is lost: a crash in between, two workers
taking one delivery at the same instant, or a store that cannot be reached give at worst
a second file, which ingestion deduplicates. Without a secret nothing is accepted (503): a
forged bounce or complaint would silence a contact.
"""

from __future__ import annotations

import resend
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.intake.delivery_ids import DeliveryIds
from xmas_pipeline.intake.http import Reject, check_json_content_type, read_body
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings

PATH = "/webhook/resend"
SOURCE = "resend"


def _reason(message: str) -> str:
    """A short reason from the SDK's ValueError, never echoing header values."""
    if "tolerance" in message:
        return "svix-timestamp outside the tolerance window"
    if "header is required" in message:
        return message
    if "timestamp" in message:
        return "invalid svix-timestamp"
    if "parse" in message:
        return "body is not valid JSON"
    if "payload cannot be empty" in message:
        return "empty body"
    return "invalid Svix signature"


class ResendEndpoint:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.delivered = DeliveryIds(settings.database_url, SOURCE)

    async def post(self, request: Request) -> Response:
        secret = self.settings.reveal("resend_webhook_secret")
        if not secret:
            raise Reject(503, "RESEND_WEBHOOK_SECRET is not configured")
        body = await read_body(request, self.settings.intake_max_body_bytes)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(400, "body is not valid JSON") from None
        headers = request.headers
        message_id = headers.get("svix-id", "")
        try:
            event = resend.Webhooks.verify(
                {
                    "payload": text,
                    "headers": {
                        "id": message_id,
                        "timestamp": headers.get("svix-timestamp", ""),
                        "signature": headers.get("svix-signature", ""),
                    },
                    "webhook_secret": secret,
                }
            )
        except ValueError as exc:
            reason = _reason(str(exc))
            status = 400 if reason in ("body is not valid JSON", "empty body") else 401
            raise Reject(status, reason) from None
        check_json_content_type(request)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise Reject(400, "event type missing")
        if await self.delivered.stored(message_id):
            return JSONResponse({"status": "duplicate", "type": event["type"]})
        item = await self.store.put("email-events", body)
        await self.delivered.remember(message_id)  # only once the file is written
        return JSONResponse(
            {
                "status": "accepted",
                "type": event["type"],
                "event_id": item.name.removesuffix(".json"),
            }
        )
