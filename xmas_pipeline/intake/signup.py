"""The website funnel's assessment results, at two addresses.

`POST /webhook/christmas-signup` takes the signup JSON itself. The live website still posts
to the original tool's Prefect endpoint, `POST /api/deployments/<id>/create_flow_run`, with
`{"parameters": {...the signup...}}` (any deployment id); that is taken too, with the same
checks and answers. Its inbox file holds the `parameters` object as the website's
JavaScript serializes it (`JSON.stringify`: compact, non-ASCII kept), so the same signup
posted compactly to either address gives byte-identical files.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.core.signup import Signup, field_errors
from xmas_pipeline.intake.client import request_details
from xmas_pipeline.intake.http import (
    check_bearer,
    check_json_content_type,
    parse_json,
    read_body,
)
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings

PATH = "/webhook/christmas-signup"
FLOW_RUN_PATH = "/api/deployments/{deployment_id}/create_flow_run"
# FLOW_RUN_PATH as the CORS wrapper matches it (one path segment, as Starlette's route does).
_FLOW_RUN_PATTERN = re.compile(r"/api/deployments/[^/]+/create_flow_run")

# The funnel may post from the visitor's browser; the original endpoint answered
# cross-origin requests, so this one does too (no cookies are involved).
# (`Access-Control-Allow-Origin` itself is added to every answer by the app.)
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def is_signup_path(path: str) -> bool:
    """Whether a request path is one of the two signup addresses."""
    return path == PATH or _FLOW_RUN_PATTERN.fullmatch(path) is not None


def website_json(value: dict[str, Any]) -> bytes:
    """`value` serialized as the website's `JSON.stringify` does: no spaces, UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _rejected(errors: dict[str, str]) -> JSONResponse:
    return JSONResponse({"status": "rejected", "errors": errors}, status_code=422)


class SignupEndpoint:
    def __init__(self, settings: Settings, store: EventStore, campaign_name: str) -> None:
        self.settings = settings
        self.store = store
        self.campaign_name = campaign_name

    async def post(self, request: Request) -> Response:
        received = await self._json_object(request)
        if isinstance(received, Response):
            return received
        body, data = received
        # The file holds the body exactly as received; ingestion re-validates it.
        return await self._accept(data, body, request)

    async def post_flow_run(self, request: Request) -> Response:
        """The original Prefect endpoint: the signup is the body's `parameters`."""
        received = await self._json_object(request)
        if isinstance(received, Response):
            return received
        _, data = received
        parameters = data.get("parameters")
        if not isinstance(parameters, dict):
            return _rejected({"parameters": "must be a JSON object holding the signup"})
        try:
            stored = website_json(parameters)
        except (UnicodeEncodeError, RecursionError):  # a lone surrogate escape ("\ud800")
            return _rejected({"parameters": "holds text that is not valid Unicode"})
        return await self._accept(parameters, stored, request)

    async def preflight(self, request: Request) -> Response:
        return Response(status_code=204, headers=CORS_HEADERS)

    async def _json_object(self, request: Request) -> tuple[bytes, dict[str, Any]] | Response:
        """The raw body and its JSON object, or the answer refusing it."""
        check_bearer(request, self.settings.reveal("signup_token"))
        check_json_content_type(request)
        body = await read_body(request, self.settings.intake_max_body_bytes)
        data = parse_json(body)
        if not isinstance(data, dict):
            return _rejected({"body": "must be a JSON object"})
        return body, data

    async def _accept(self, data: dict[str, Any], stored: bytes, request: Request) -> Response:
        """Validate the signup `data`; store `stored` as its inbox file (the client's
        address and user agent beside it, for consent records), then answer 202."""
        try:
            signup = Signup.model_validate(data)
        except ValidationError as exc:
            return _rejected(field_errors(exc))
        item = await self.store.put("signups", stored, request_details(request))
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
