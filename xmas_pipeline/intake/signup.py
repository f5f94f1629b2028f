"""`POST /webhook/christmas-signup`: the website funnel's assessment results."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.core.signup import Signup, field_errors
from xmas_pipeline.intake.http import (
    check_bearer,
    check_json_content_type,
    parse_json,
    read_body,
)
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings

PATH = "/webhook/christmas-signup"

# The funnel may post from the visitor's browser; the original endpoint answered
# cross-origin requests, so this one does too (no cookies are involved).
# (`Access-Control-Allow-Origin` itself is added to every answer by the app.)
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def _rejected(errors: dict[str, str]) -> JSONResponse:
    return JSONResponse({"status": "rejected", "errors": errors}, status_code=422)


class SignupEndpoint:
    def __init__(self, settings: Settings, store: EventStore, campaign_name: str) -> None:
        self.settings = settings
        self.store = store
        self.campaign_name = campaign_name

    async def post(self, request: Request) -> Response:
        check_bearer(request, self.settings.reveal("signup_token"))
        check_json_content_type(request)
        body = await read_body(request, self.settings.intake_max_body_bytes)
        data = parse_json(body)
        if not isinstance(data, dict):
            return _rejected({"body": "must be a JSON object"})
        try:
            signup = Signup.model_validate(data)
        except ValidationError as exc:
            return _rejected(field_errors(exc))
        # The file holds the body exactly as received; ingestion re-validates it.
        item = await self.store.put("signups", body)
        return JSONResponse(
            {
                "status": "accepted",
                "email": signup.email,
                "campaign": self.campaign_name,
                "segment": signup.segment.value,
                "event_id": item.name.removesuffix(".json"),
            },
            status_code=202,
        )

    async def preflight(self, request: Request) -> Response:
        return Response(status_code=204, headers=CORS_HEADERS)
