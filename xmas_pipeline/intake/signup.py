"""The website funnel's assessment results, at three addresses.

`POST /webhook/campaigns/<slug>/signup` takes the signup JSON itself for any campaign the
intake serves (`intake.campaigns`: 404 for an unknown slug, 503 for a broken folder).
`POST /webhook/christmas-signup` takes it for the default campaign (`XMAS_DEFAULT_CAMPAIGN`).
The live website still posts to the original tool's Prefect endpoint,
`POST /api/deployments/<id>/create_flow_run`, with `{"parameters": {...the signup...}}`
(any deployment id); that is taken too, with the same checks and answers, for the default
campaign or the one its `campaign` parameter names (a slug). Its inbox file holds the
`parameters` object as the website's JavaScript serializes it (`JSON.stringify`: compact,
non-ASCII kept), so the same signup posted compactly to either address gives
byte-identical files.

Every signup's `.request` file (beside its inbox file) names its campaign's slug under
`campaign`: that, not anything in the body, is the campaign ingestion enrols it in.

Abuse checks (origin, rate limits, bot check) are `intake.abuse`'s; a bot-check token in
the signup (`captcha_token`, `cf-turnstile-response` or `h-captcha-response`) is never
stored: a body holding one is stored re-serialized without it, as the website would have
sent it (`website_json`), and any other body exactly as received.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.captcha import take_token
from xmas_pipeline.core.signup import Signup, field_errors
from xmas_pipeline.core.signups_close import signups_open
from xmas_pipeline.intake.abuse import SignupGuard
from xmas_pipeline.intake.campaigns import IntakeCampaigns
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
CAMPAIGN_PATH = "/webhook/campaigns/{slug}/signup"
FLOW_RUN_PATH = "/api/deployments/{deployment_id}/create_flow_run"
# The paths as the CORS wrapper matches them (one path segment, as Starlette's route does).
_PATTERNS = (
    re.compile(r"/api/deployments/[^/]+/create_flow_run"),
    re.compile(r"/webhook/campaigns/[^/]+/signup"),
)
# The flow run's parameter naming the campaign (a slug); without it, the default campaign.
CAMPAIGN_PARAMETER = "campaign"

# The funnel may post from the visitor's browser, from the pages of the allowed origins
# (no cookies are involved). `Access-Control-Allow-Origin` itself is added by the app.
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def is_signup_path(path: str) -> bool:
    """Whether a request path is one of the signup addresses."""
    return path == PATH or any(pattern.fullmatch(path) for pattern in _PATTERNS)


def website_json(value: dict[str, Any]) -> bytes:
    """`value` serialized as the website's `JSON.stringify` does: no spaces, UTF-8 as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _rejected(errors: dict[str, str]) -> JSONResponse:
    return JSONResponse({"status": "rejected", "errors": errors}, status_code=422)


class SignupEndpoint:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        campaigns: IntakeCampaigns,
        guard: SignupGuard,
    ) -> None:
        self.settings = settings
        self.store = store
        self.campaigns = campaigns
        self.guard = guard

    async def post(self, request: Request) -> Response:
        """The original address: the default campaign."""
        return await self._post_signup(request, self.campaigns.default())

    async def post_campaign(self, request: Request) -> Response:
        """One campaign's address. The campaign is looked up first: an unknown or broken
        one is answered before anything is counted or read."""
        return await self._post_signup(request, self.campaigns.get(request.path_params["slug"]))

    async def _post_signup(self, request: Request, campaign: Campaign) -> Response:
        received = await self._json_object(request)
        if isinstance(received, Response):
            return received
        body, data = received
        signup_data, token = take_token(data)
        if signup_data is not data:  # a token field: stored without it
            try:
                body = website_json(signup_data)
            except (UnicodeEncodeError, RecursionError):  # a lone surrogate escape
                return _rejected({"body": "holds text that is not valid Unicode"})
        # The file holds the body as received (less any token); ingestion re-validates it.
        return await self._accept(request, campaign, signup_data, body, token)

    async def post_flow_run(self, request: Request) -> Response:
        """The original Prefect endpoint: the signup is the body's `parameters`, and its
        `campaign` parameter, when given, the slug of the campaign (else the default)."""
        received = await self._json_object(request)
        if isinstance(received, Response):
            return received
        _, data = received
        parameters = data.get("parameters")
        if not isinstance(parameters, dict):
            return _rejected({"parameters": "must be a JSON object holding the signup"})
        slug = parameters.get(CAMPAIGN_PARAMETER)
        if slug is None:
            campaign = self.campaigns.default()
        elif isinstance(slug, str):
            campaign = self.campaigns.get(slug)
        else:
            return _rejected({CAMPAIGN_PARAMETER: "must be a campaign's slug, e.g. christmas-2026"})
        # The token may ride in the signup or beside it; it is never stored.
        parameters, token = take_token(parameters)
        if token is None:
            token = take_token(data)[1]
        try:
            stored = website_json(parameters)
        except (UnicodeEncodeError, RecursionError):  # a lone surrogate escape ("\ud800")
            return _rejected({"parameters": "holds text that is not valid Unicode"})
        # The file keeps a `campaign` parameter as sent; the `.request` file names the campaign.
        return await self._accept(request, campaign, parameters, stored, token)

    async def preflight(self, request: Request) -> Response:
        self.guard.check_origin(request)
        return Response(status_code=204, headers=CORS_HEADERS)

    async def _json_object(self, request: Request) -> tuple[bytes, dict[str, Any]] | Response:
        """The raw body and its JSON object, or the answer refusing it."""
        await self.guard.admit_request(request)
        check_bearer(request, self.settings.reveal("signup_token"))
        check_json_content_type(request)
        body = await read_body(request, self.settings.intake_max_body_bytes)
        data = parse_json(body)
        if not isinstance(data, dict):
            return _rejected({"body": "must be a JSON object"})
        return body, data

    async def _accept(
        self,
        request: Request,
        campaign: Campaign,
        data: dict[str, Any],
        stored: bytes,
        token: Any,
    ) -> Response:
        """Validate the signup `data`; store `stored` as its inbox file (the client's
        address and user agent beside it, for consent records, and the campaign's slug),
        then answer 202."""
        try:
            signup = Signup.model_validate(data)
        except ValidationError as exc:
            return _rejected(field_errors(exc))
        await self.guard.admit_signup(request, signup.email, token)
        details = request_details(request, campaign.slug, self.guard.client(request))
        item = await self.store.put("signups", stored, details)
        answer: dict[str, Any] = {
            "status": "accepted",
            "email": signup.email,
            "campaign": campaign.name,
            "segment": signup.segment.value,
            "event_id": item.name.removesuffix(".json"),
        }
        # Kept all the same (the consent record), but a new person is not enrolled once
        # signups have closed; judged on the file's own received time, as ingestion does.
        if not signups_open(campaign, item.received_at):
            answer.update({"enrolled": False, "reason": "campaign closed"})
        return JSONResponse(answer, status_code=202)
