"""`GET /health`: the original tool's health answer, with what this deployment has set up.

Only booleans say which integrations are configured: never a secret, nor a URL that could
hold one (a chat webhook URL is itself a credential). `campaigns` lists the campaigns the
intake serves and the broken ones with their problem (a file relative to the campaigns
directory and the reason: what the broken campaign's signup path answers anyway).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmas_pipeline.intake.campaigns import IntakeCampaigns
from xmas_pipeline.settings import Settings

PATH = "/health"
DISTRIBUTION = "xmas_pipeline"


def package_version() -> str:
    # From the installed metadata: the intake may not import the top-level package.
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


# Each integration the answer names, and the setting whose presence turns it on.
INTEGRATIONS = {
    "notion": "notion_token",
    "resend": "resend_api_key",
    "calcom_webhook_signing": "calcom_webhook_secret",
    "calcom_api_polling": "calcom_api_key",
    "resend_webhook_signing": "resend_webhook_secret",
    "signup_token": "signup_token",
    "alert_webhook": "alert_webhook_url",
}


def integrations(settings: Settings) -> dict[str, bool]:
    """Which integrations are configured, by name."""
    return {name: bool(settings.reveal(field)) for name, field in INTEGRATIONS.items()}


class HealthEndpoint:
    def __init__(
        self,
        settings: Settings,
        campaigns: IntakeCampaigns,
        protections: dict[str, Any] | None = None,
    ) -> None:
        # Fixed for the life of the process (campaigns are loaded once too): computed once.
        default = campaigns.served.get(campaigns.default_slug)
        self.answer: dict[str, Any] = {
            "status": "healthy",
            # The default campaign's name, as the original answered (its slug if broken).
            "campaign": default.name if default else campaigns.default_slug,
            "campaigns": campaigns.summary(),
            "version": package_version(),
            "integrations": integrations(settings),
        }
        if protections is not None:
            # The signup's abuse protections: limits, provider name, origins (no secret).
            self.answer["protections"] = protections

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.answer)
