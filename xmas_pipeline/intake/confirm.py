"""`GET`/`POST /confirm?token=...`: double opt-in confirmation links (`core.optin`).

GET only shows a page with a button (link scanners and mail previews follow GETs, and a
confirmation must be a person's click); POST records the click as one file in
`inbox/signups/<day>/`, with the client's address and user agent, and ingestion does the
rest (it checks the token again). A link that is forged, altered, for a campaign the intake
does not serve or expired gets a 400 page saying which (a campaign whose folder is broken:
503, retry later); posting a link twice stores two files, which ingestion reads as one
confirmation.

The token names its campaign (`core.optin`: every link ever sent carries its slug), so a
click confirms in that campaign; its `.request` file names it too, as a signup's does.

The tokens are signed with the unsubscribe keys under a purpose of their own, so no new
secret is needed and a rotated key keeps checking the links already sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import Response

from xmas_pipeline.core.optin import (
    ConfirmClaim,
    TokenProblem,
    confirmation_event,
    verify_confirm_token,
)
from xmas_pipeline.intake.abuse import SignupGuard
from xmas_pipeline.intake.campaigns import IntakeCampaigns
from xmas_pipeline.intake.client import request_details
from xmas_pipeline.intake.http import Reject, read_body
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.intake.unsubscribe import UnsubscribeEndpoint, page
from xmas_pipeline.settings import Settings

PATH = "/confirm"


def _key_id(token: str | None) -> str:
    parts = (token or "").split(".")
    return parts[2] if len(parts) == 3 and parts[2].isdigit() else ""


class ConfirmEndpoint:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        keys: UnsubscribeEndpoint,
        campaigns: IntakeCampaigns,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: SignupGuard | None = None,
    ) -> None:
        self.guard = guard  # the client's address through trusted proxies, its click rate
        self.settings = settings
        self.store = store
        self.keys = keys
        self.campaigns = campaigns
        self.clock = clock

    async def _verified(self, token: str | None) -> ConfirmClaim | Response:
        """The claim of a genuine, unexpired link for a campaign served here, or the page
        saying why there is none."""
        try:
            keys = await self.keys.signing_keys(_key_id(token))
        except Reject as exc:
            return page("Confirmation unavailable", f"<p>{escape(exc.reason)}.</p>", exc.status)
        try:
            claim = verify_confirm_token(token, keys, self.clock())
        except TokenProblem as problem:
            if problem.reason == "expired":
                return page(
                    "Link expired",
                    "<p>This confirmation link has expired. Take the assessment again to "
                    "get a new one.</p>",
                    400,
                )
            return _invalid()
        try:
            self.campaigns.get(claim.campaign)
        except Reject as exc:
            if exc.status != 503:
                return _invalid()  # no such campaign here
            return page(
                "Confirmation unavailable",
                "<p>We cannot confirm for this campaign just now. Please try again later.</p>",
                503,
                {"Retry-After": exc.headers.get("Retry-After", "300")},
            )
        return claim

    async def get(self, request: Request) -> Response:
        token = request.query_params.get("token")
        claim = await self._verified(token)
        if isinstance(claim, Response):
            return claim
        action = f"?{urlencode({'token': token})}"
        what = (
            "use the new name or business name you gave"
            if claim.kind == "change"
            else "start sending your assessment results and our emails"
        )
        return page(
            "Confirm your email",
            f"<p>Confirm that <strong>{escape(claim.email)}</strong> is yours, and we will "
            f"{what}.</p>"
            f'<form method=post action="{escape(action)}">'
            "<button type=submit>Yes, it was me</button></form>",
        )

    async def post(self, request: Request) -> Response:
        body = await read_body(request, self.settings.intake_max_body_bytes)
        try:
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:
            form = {}
        token = request.query_params.get("token") or next(iter(form.get("token", [])), None)
        claim = await self._verified(token)
        if isinstance(claim, Response):
            return claim
        wait = await self.guard.admit_click(request) if self.guard else None
        if wait is not None:
            return page(
                "Please try again later",
                f"<p>Too many confirmations from your network address: retry in {wait} s.</p>",
                429,
                {"Retry-After": str(wait)},
            )
        client = request_details(
            request, claim.campaign, self.guard.client(request) if self.guard else None
        )
        event = confirmation_event(
            claim,
            str(token),
            client["ip"],
            client["user_agent"],
            self.clock(),
            client.get("forwarded_for", ""),
        )
        try:
            await self.store.put("signups", event, client)
        except Reject as exc:
            return page("Please try again", f"<p>{escape(exc.reason)}.</p>", exc.status)
        return page(
            "Thank you, you are confirmed",
            f"<p>We have confirmed <strong>{escape(claim.email)}</strong>.</p>",
        )


def _invalid() -> Response:
    return page(
        "Link not valid",
        "<p>This confirmation link is not valid. Please use the link from the email we "
        "sent you.</p>",
        400,
    )
