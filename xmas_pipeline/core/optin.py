"""Double opt-in: signed, expiring confirmation links, and the confirmation event.

A confirmation token is ``<payload>.<mac>.<key id>``: the payload base64url JSON
``{"e": email, "c": campaign slug, "s": subject, "x": expiry (epoch seconds)}``, the mac
HMAC-SHA256 over a purpose label of its own, the key id and the payload, with the
unsubscribe keys (`core.unsubscribe.SigningKeys`): no new secret, and a rotated key keeps
checking the links already sent. The subject says what is confirmed: ``signup:<event id>``
(a new signup) or ``change:<id>`` (a held change of name or business, `core.retake`).

The intake writes a click as one file in ``inbox/signups/<day>/``::

    {"type": "signup.confirmed", "created_at": "...",
     "data": {"email": "jane@example.com", "token": "...", "ip": "203.0.113.9",
              "user_agent": "..."}}

The token is kept in the file and checked again at ingestion, with the file's arrival as
the moment: anyone can post a JSON body to the signup endpoint, so only a genuine link
confirms anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from xmas_pipeline.core.unsubscribe import SigningKeys

CONFIRMED_TYPE = "signup.confirmed"
_PURPOSE = b"xmas-pipeline/confirm/v1\n"
_MAX_TOKEN = 2048
_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,1500}\.[A-Za-z0-9_-]{43}\.[0-9]{1,9}")
_SUBJECT = re.compile(r"(signup|change):[A-Za-z0-9_.-]{1,200}")
# Request details kept in a consent record: capped, so a header cannot bloat the store.
MAX_USER_AGENT = 500


class TokenProblem(ValueError):
    """A confirmation token that confirms nothing: `reason` is "invalid" or "expired"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConfirmClaim:
    """What a genuine token confirms."""

    email: str
    campaign: str
    subject: str
    expires_at: datetime

    @property
    def kind(self) -> str:
        return self.subject.split(":", 1)[0]

    @property
    def subject_id(self) -> str:
        return self.subject.split(":", 1)[1]


@dataclass(frozen=True)
class Confirmation:
    """A confirmation click as ingestion reads it back from the inbox."""

    claim: ConfirmClaim
    at: datetime  # the file's arrival
    ip: str
    user_agent: str
    source: str  # the inbox file
    forwarded_for: str = ""  # what the click claimed in X-Forwarded-For

    @property
    def contact_key(self) -> str:
        return self.claim.email


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str, key_id: str, secret: str) -> bytes:
    if not secret:
        raise ValueError("the signing secret is empty")
    message = _PURPOSE + key_id.encode("ascii") + b"\n" + payload.encode("ascii")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def make_confirm_token(
    email: str, campaign: str, subject: str, expires_at: datetime, keys: str | SigningKeys
) -> str:
    if not _SUBJECT.fullmatch(subject):
        raise ValueError(f"not a confirmation subject: {subject!r}")
    body = {
        "e": email.strip().lower(),
        "c": campaign,
        "s": subject,
        "x": int(expires_at.timestamp()),
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
    key_id, secret = SigningKeys.of(keys).current
    return f"{payload}.{_b64(_mac(payload, key_id, secret))}.{key_id}"


def verify_confirm_token(token: str | None, keys: str | SigningKeys, now: datetime) -> ConfirmClaim:
    """The claim a genuine, unexpired token makes; `TokenProblem` otherwise."""
    ring = SigningKeys.of(keys)
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _SHAPE.fullmatch(token):
        raise TokenProblem("invalid")
    payload, mac, key_id = token.split(".")
    secret = ring.get(key_id)
    if secret is None:
        raise TokenProblem("invalid")
    try:
        given = _unb64(mac)
    except ValueError:
        raise TokenProblem("invalid") from None
    if not hmac.compare_digest(given, _mac(payload, key_id, secret)):
        raise TokenProblem("invalid")
    try:
        body = json.loads(_unb64(payload).decode("utf-8"))
        claim = ConfirmClaim(
            email=str(body["e"]),
            campaign=str(body["c"]),
            subject=str(body["s"]),
            expires_at=datetime.fromtimestamp(int(body["x"]), UTC),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError):
        raise TokenProblem("invalid") from None
    if not _SUBJECT.fullmatch(claim.subject):
        raise TokenProblem("invalid")
    if now >= claim.expires_at:
        raise TokenProblem("expired")
    return claim


def confirm_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/confirm?{urlencode({'token': token})}"


def signup_subject(source: str) -> str:
    """The subject of a signup's confirmation: its event id (the inbox file's name)."""
    name = source.rsplit("/", 1)[-1].removesuffix(".json")
    return f"signup:{name}"


def clean_user_agent(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isprintable())[:MAX_USER_AGENT]


def confirmation_event(
    claim: ConfirmClaim,
    token: str,
    ip: str,
    user_agent: str,
    moment: datetime,
    forwarded_for: str = "",
) -> bytes:
    """The inbox file of one click. The address is written out too (the token holds it
    encoded) so that `forget` finds the file like any other holding it."""
    event = {
        "type": CONFIRMED_TYPE,
        "created_at": moment.astimezone(UTC).isoformat(),
        "data": {
            "email": claim.email,
            "token": token,
            "ip": ip,
            "user_agent": clean_user_agent(user_agent),
            "forwarded_for": forwarded_for[:200],
        },
    }
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def is_confirmation(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("type") == CONFIRMED_TYPE


def read_confirmation(
    payload: dict[str, Any],
    keys: str | SigningKeys,
    *,
    received_at: datetime,
    source: str,
) -> Confirmation:
    """A confirmation file checked again: its token must be genuine and was unexpired when
    the file arrived. ValueError with the reason otherwise (the file is reported)."""
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ValueError("confirmation without a data object")
    try:
        claim = verify_confirm_token(data.get("token"), keys, received_at)
    except TokenProblem as problem:
        raise ValueError(f"confirmation with an {problem.reason} token") from None
    if str(data.get("email") or claim.email) != claim.email:
        raise ValueError("confirmation whose address is not its token's")
    return Confirmation(
        claim=claim,
        at=received_at,
        ip=str(data.get("ip") or "")[:64],
        user_agent=clean_user_agent(str(data.get("user_agent") or "")),
        source=source,
        forwarded_for=str(data.get("forwarded_for") or "")[:200],
    )


def confirmation_open(requested_at: datetime, ttl: timedelta, now: datetime) -> bool:
    """Whether a confirmation asked for at `requested_at` may still be emailed or clicked."""
    return now < requested_at + ttl
