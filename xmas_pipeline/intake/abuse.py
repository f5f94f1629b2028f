"""What keeps the public signup from being abused, in the order a signup meets it:

1. the page's origin: a browser post from a page not in `XMAS_SIGNUP_ALLOWED_ORIGINS` is
   refused (403); a post without `Origin` (server to server) is not concerned;
2. a rate per client address (`XMAS_SIGNUP_RATE_PER_IP`; an IPv6 client by its /64),
   counted on every signup request;
3. the bot check (`XMAS_CAPTCHA_SECRET`), once the signup is well formed;
4. a rate per email address (`XMAS_SIGNUP_RATE_PER_EMAIL`; lower case, without a `+tag`),
   counted on well-formed, verified signups only.

Each refusal is a `Reject` raised before anything is written to the inbox.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from xmas_pipeline.adapters.captcha import CaptchaVerifier
from xmas_pipeline.core.captcha import Outcome, token_problem
from xmas_pipeline.core.client_address import client_address, rate_key
from xmas_pipeline.core.origins import ANY, origin_allowed
from xmas_pipeline.core.rate_limit import email_key
from xmas_pipeline.intake.http import Reject
from xmas_pipeline.intake.rate_limits import Clock, SharedLimits
from xmas_pipeline.settings import Settings

CAPTCHA_RETRY_AFTER_S = 10


class SignupGuard:
    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.trusted = settings.trusted_proxy_networks
        self.origins = settings.allowed_origins
        self.rate_per_ip = settings.rate_per_ip
        self.rate_per_email = settings.rate_per_email
        self.limits = SharedLimits(settings.database_url, clock)
        secret = settings.reveal("captcha_secret")
        self.provider = settings.captcha_provider if secret else None
        self.captcha = CaptchaVerifier(settings.captcha_url, secret) if secret else None

    def client(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.getlist("x-forwarded-for"), self.trusted)

    def allow_origin(self, request: Request) -> str | None:
        """The `Access-Control-Allow-Origin` value for this request, if any."""
        origin = request.headers.get("origin")
        if origin is None or not origin_allowed(origin, self.origins):
            return None
        return "*" if self.origins == (ANY,) else origin

    def check_origin(self, request: Request) -> None:
        """403 for a browser request from a page not on the allow-list. Without the
        check, a page anywhere could post signups from its visitors' browsers (a simple
        POST needs no preflight; CORS would only hide the answer)."""
        origin = request.headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.origins):
            raise Reject(403, "this web origin may not post signups")

    async def admit_request(self, request: Request) -> None:
        """The origin and the per-client rate, before the body is even read."""
        self.check_origin(request)
        if self.rate_per_ip is None:
            return
        key = rate_key(self.client(request))
        wait = await self.limits.take("signup-ip", self.rate_per_ip, key)
        if wait is not None:
            raise Reject(
                429,
                f"too many signups from your network address: retry in {wait} s",
                {"Retry-After": str(wait)},
            )

    async def admit_click(self, request: Request) -> int | None:
        """Seconds to wait before this client's next confirmation click is stored, or None.
        A valid link can be posted again and again, and each click is an inbox file: the
        per-client signup rate bounds clicks too (counted on their own)."""
        if self.rate_per_ip is None:
            return None
        return await self.limits.take(
            "confirm-ip", self.rate_per_ip, rate_key(self.client(request))
        )

    async def admit_signup(self, request: Request, email: str, token: Any) -> None:
        """The bot check, then the per-address rate, for a well-formed signup."""
        if self.captcha is not None:
            problem = token_problem(token)
            if problem:
                raise Reject(400 if token is None else 403, problem)
            client = self.client(request)
            verdict = await self.captcha.verify(token, None if client == "unknown" else client)
            if verdict.outcome is Outcome.REJECTED:
                raise Reject(403, "the captcha was not accepted: solve a new challenge")
            if verdict.outcome is Outcome.UNAVAILABLE:
                raise Reject(
                    503,
                    "the captcha could not be checked just now: please retry",
                    {"Retry-After": str(CAPTCHA_RETRY_AFTER_S)},
                )
        if self.rate_per_email is None:
            return
        wait = await self.limits.take("signup-email", self.rate_per_email, email_key(email))
        if wait is not None:
            raise Reject(
                429,
                f"too many signups for this email address: retry in {wait} s",
                {"Retry-After": str(wait)},
            )

    def protections(self) -> dict[str, Any]:
        """What is on, for `/health`: limits, the provider's name, the origins (all public)."""
        return {
            "signup_rate_per_ip": str(self.rate_per_ip) if self.rate_per_ip else "off",
            "signup_rate_per_email": str(self.rate_per_email) if self.rate_per_email else "off",
            "captcha": self.provider or "off",
            "signup_allowed_origins": list(self.origins),
        }

    def close(self) -> None:
        self.limits.close()
