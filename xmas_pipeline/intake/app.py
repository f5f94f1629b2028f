"""The HTTP intake: webhooks in, one durable inbox file per accepted event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.intake import calcom, confirm, health, resend, signup, unsubscribe
from xmas_pipeline.intake.abuse import SignupGuard
from xmas_pipeline.intake.campaigns import load_intake_campaigns
from xmas_pipeline.intake.http import Reject, rejection
from xmas_pipeline.intake.rate_limits import Clock
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings


class _SignupCors:
    """Answers of the signup endpoints name the requesting page's origin when it is on the
    allow-list (`XMAS_SIGNUP_ALLOWED_ORIGINS`), and say they vary by origin."""

    def __init__(self, app: ASGIApp, guard: SignupGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not signup.is_signup_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        allowed = self.guard.allow_origin(Request(scope))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                if allowed is not None:
                    headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, clock: Clock = time.time) -> Starlette:
    """The app; `clock` (epoch seconds) times the signup rate limits. The campaigns are
    loaded here, once: a new or fixed campaign folder is served after a restart."""
    store = EventStore(Inbox(settings.inbox_root))
    campaigns = load_intake_campaigns(settings)
    guard = SignupGuard(settings, clock)
    signups = signup.SignupEndpoint(settings, store, campaigns, guard)
    bookings = calcom.CalcomEndpoint(settings, store)
    email_events = resend.ResendEndpoint(settings, store)
    unsubscribes = unsubscribe.UnsubscribeEndpoint(settings, store)
    # Confirmation links are signed with the unsubscribe keys (their own purpose).
    confirms = confirm.ConfirmEndpoint(settings, store, unsubscribes, campaigns, guard=guard)
    routes = [
        Route(signup.PATH, signups.post, methods=["POST"]),
        Route(signup.PATH, signups.preflight, methods=["OPTIONS"]),
        Route(signup.CAMPAIGN_PATH, signups.post_campaign, methods=["POST"]),
        Route(signup.CAMPAIGN_PATH, signups.preflight, methods=["OPTIONS"]),
        # The original tool's Prefect endpoint, which the live website still posts to.
        Route(signup.FLOW_RUN_PATH, signups.post_flow_run, methods=["POST"]),
        Route(signup.FLOW_RUN_PATH, signups.preflight, methods=["OPTIONS"]),
        Route(calcom.PATH, bookings.post, methods=["POST"]),
        Route(resend.PATH, email_events.post, methods=["POST"]),
        Route(unsubscribe.PATH, unsubscribes.get, methods=["GET"]),
        Route(unsubscribe.PATH, unsubscribes.post, methods=["POST"]),
        Route(confirm.PATH, confirms.get, methods=["GET"]),
        Route(confirm.PATH, confirms.post, methods=["POST"]),
        Route(
            health.PATH,
            health.HealthEndpoint(settings, campaigns, guard.protections()).get,
            methods=["GET"],
        ),
        Route("/healthz", _healthz, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # The store's connections, if any were opened.
            email_events.delivered.close()
            guard.close()

    app = Starlette(routes=routes, exception_handlers={Reject: rejection}, lifespan=lifespan)
    app.add_middleware(_SignupCors, guard=guard)
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """The app built from the environment: what each of several uvicorn workers runs, since a
    worker is a process of its own that imports the app by name (`server.APP_FACTORY`)."""
    return create_app(Settings.from_env())
