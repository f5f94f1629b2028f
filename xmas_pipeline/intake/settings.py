"""What the HTTP intake needs to know, read from the environment (DESIGN.md)."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xmas_pipeline.core.campaign import load_campaign

DEFAULT_PORT = 8000
MAX_BODY_BYTES = 64 * 1024
_TRUE = {"1", "true", "yes", "on"}


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def check_svix_secret(secret: str) -> None:
    """Fail at start-up, not on the first webhook, when the Resend secret is malformed."""
    raw = secret.removeprefix("whsec_")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        # Never echo the secret itself.
        raise ValueError("RESEND_WEBHOOK_SECRET is not a Svix signing secret (base64)")


@dataclass(frozen=True)
class IntakeSettings:
    """Secrets are kept out of repr(), so logging the settings never leaks them."""

    inbox_root: str
    campaign_name: str = "Christmas 2025"
    public_url: str = f"http://localhost:{DEFAULT_PORT}"
    signup_token: str | None = field(default=None, repr=False)
    calcom_webhook_secret: str | None = field(default=None, repr=False)
    resend_webhook_secret: str | None = field(default=None, repr=False)
    unsubscribe_secret: str | None = field(default=None, repr=False)
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.resend_webhook_secret:
            check_svix_secret(self.resend_webhook_secret)
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IntakeSettings:
        env = os.environ if env is None else env
        home = Path(_get(env, "XMAS_HOME") or ".xmas").expanduser().resolve()
        port = _get(env, "XMAS_INTAKE_PORT") or str(DEFAULT_PORT)
        testing = (_get(env, "XMAS_TESTING_MODE") or "").lower() in _TRUE
        campaign = load_campaign(_get(env, "XMAS_CAMPAIGN_FILE"), testing_mode=testing)
        return cls(
            inbox_root=str(home / "inbox"),
            campaign_name=campaign.name,
            public_url=_get(env, "XMAS_PUBLIC_URL") or f"http://localhost:{port}",
            signup_token=_get(env, "XMAS_SIGNUP_TOKEN"),
            calcom_webhook_secret=_get(env, "CALCOM_WEBHOOK_SECRET"),
            resend_webhook_secret=_get(env, "RESEND_WEBHOOK_SECRET"),
            unsubscribe_secret=_get(env, "XMAS_UNSUBSCRIBE_SECRET"),
        )
