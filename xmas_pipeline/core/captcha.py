"""Bot checks (Cloudflare Turnstile, hCaptcha) as a pure rule: which verify endpoint, where a
token travels in a signup, and what the provider's `error-codes` mean for the visitor."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}
# Where the website may put the token in the signup JSON: our own name, or the field the
# provider's widget adds to a form (copied as is by a script that posts the form's fields).
TOKEN_FIELDS = ("captcha_token", "cf-turnstile-response", "h-captcha-response")
MAX_TOKEN_CHARS = 4096  # Turnstile's are at most 2,048; hCaptcha's a few thousand

# The codes that blame the token (or its absence): the visitor should solve a new challenge.
VISITOR_CODES = frozenset(
    {
        "missing-input-response",
        "invalid-input-response",
        "timeout-or-duplicate",  # Turnstile: expired or used already
        "expired-input-response",  # hCaptcha
        "already-seen-response",  # hCaptcha
        "invalid-or-already-seen-response",
        "missing-remoteip",
        "invalid-remoteip",
    }
)


class Outcome(StrEnum):
    PASSED = "passed"
    REJECTED = "rejected"  # the token is not good: 403, solve a new challenge
    UNAVAILABLE = "unavailable"  # the provider or our setup failed: 503, try again


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    codes: tuple[str, ...] = ()


def judge(answer: Any) -> Verdict:
    """The provider's JSON answer as a verdict. A failure whose codes all blame the token
    rejects it; any other failure (a wrong secret, `internal-error`, a malformed answer)
    is ours or the provider's, not the visitor's."""
    if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
        return Verdict(Outcome.UNAVAILABLE, ("malformed-answer",))
    raw = answer.get("error-codes") or []
    codes = tuple(str(code)[:60] for code in raw[:10]) if isinstance(raw, list) else ()
    if answer["success"]:
        return Verdict(Outcome.PASSED, codes)
    if codes and all(code in VISITOR_CODES for code in codes):
        return Verdict(Outcome.REJECTED, codes)
    return Verdict(Outcome.UNAVAILABLE, codes or ("no-error-codes",))


def take_token(data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The signup without any token field, and the first token found (None when absent)."""
    token = next((data[name] for name in TOKEN_FIELDS if data.get(name) not in (None, "")), None)
    if not any(name in data for name in TOKEN_FIELDS):
        return data, token
    return {k: v for k, v in data.items() if k not in TOKEN_FIELDS}, token


def token_problem(token: Any) -> str | None:
    """Why a token cannot be what a provider issued, or None."""
    if token is None:
        return "captcha_token is missing: solve the challenge and send its token"
    if not isinstance(token, str) or not token.strip():
        return "captcha_token must be a non-empty string"
    if len(token) > MAX_TOKEN_CHARS or not token.isprintable():
        return "captcha_token is not a valid challenge token"
    return None
