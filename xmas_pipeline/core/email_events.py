"""Email events: Resend's delivery webhooks and the intake's unsubscribes, as one model.

Both arrive as files in `inbox/email-events/<day>/`, in the same envelope::

    {"type": "email.bounced", "created_at": "...",
     "data": {"email_id": "...", "to": ["jane@example.com"], "tags": {...}, ...}}
    {"type": "contact.unsubscribed", "created_at": "...",
     "data": {"email": "jane@example.com", "source": "one-click"}}

Each becomes a `DeliveryEvent`: which message (Resend's email id), whose (the contact
key), what happened, and when. `status_rank` orders a message's delivery status so a late
"delivered" never hides an "opened"; `contact_flags` says which exit flag an event sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, TypeAdapter, ValidationError

from xmas_pipeline.core.payloads import load_object, parse_time
from xmas_pipeline.core.signup import contact_key

DeliveryKind = Literal[
    "sent",
    "delivery_delayed",
    "delivered",
    "opened",
    "clicked",
    "soft_bounced",
    "failed",
    "bounced",
    "complained",
    "unsubscribed",
]

RESEND_KINDS: dict[str, DeliveryKind] = {
    "email.sent": "sent",
    "email.delivery_delayed": "delivery_delayed",
    "email.delivered": "delivered",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.bounced": "bounced",
    "email.failed": "failed",
    "email.complained": "complained",
    "contact.unsubscribed": "unsubscribed",
}

# A message's status is the highest-ranked event it had: engagement beats delivery, and
# a bounce or a complaint beats everything (they are what someone needs to see).
STATUS_RANK: dict[str, int] = {
    "sent": 1,
    "delivery_delayed": 2,
    "delivered": 3,
    "opened": 4,
    "clicked": 5,
    "soft_bounced": 6,
    "failed": 7,
    "bounced": 8,
    "complained": 9,
    "unsubscribed": 10,
}

_EMAIL = TypeAdapter(EmailStr)
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class DeliveryEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: DeliveryKind
    contact_key: str
    email: str
    provider_id: str = ""  # Resend's email id ("" for an unsubscribe)
    at: datetime
    tags: dict[str, str] = {}
    detail: str = ""  # the bounce message, the clicked link, the unsubscribe source
    ref: str = ""

    @property
    def dedupe_key(self) -> str:
        return f"{self.kind}|{self.provider_id}|{self.contact_key}|{self.at.isoformat()}"

    @property
    def rank(self) -> int:
        return STATUS_RANK[self.kind]


def _address(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("data.to: missing recipient")
    text = value.strip()
    if "<" in text and text.endswith(">"):  # "Jane <jane@x.com>"
        text = text[text.rindex("<") + 1 : -1]
    try:
        return str(_EMAIL.validate_python(text))
    except ValidationError as exc:
        raise ValueError(f"data.to: not an address: {value!r}") from exc


def _tags(value: Any) -> dict[str, str]:
    """Webhooks carry tags as an object; the send API takes `[{"name", "value"}]`."""
    if isinstance(value, Mapping):
        return {str(k)[:64]: str(v)[:256] for k, v in value.items()}
    if isinstance(value, list):
        return {
            str(t.get("name"))[:64]: str(t.get("value", ""))[:256]
            for t in value
            if isinstance(t, Mapping) and t.get("name")
        }
    return {}


def _short(value: Any) -> str:
    return _CONTROL.sub(" ", str(value))[:300] if value else ""


def parse_email_event(
    body: bytes | str | Mapping[str, Any], *, received_at: datetime, ref: str = ""
) -> DeliveryEvent | None:
    """One email-events file; None for event types the campaign does not act on."""
    data = load_object(body)
    kind_name = data.get("type")
    if not isinstance(kind_name, str) or not kind_name:
        raise ValueError("type: missing")
    kind = RESEND_KINDS.get(kind_name)
    if kind is None:
        return None
    payload = data.get("data")
    if not isinstance(payload, Mapping):
        raise ValueError("data: missing or not an object")
    created = data.get("created_at") or payload.get("created_at")
    at = parse_time(created, "created_at") if created else received_at

    if kind == "unsubscribed":
        email = _address(payload.get("email"))
        return DeliveryEvent(
            kind=kind,
            contact_key=contact_key(email),
            email=email,
            at=at,
            detail=_short(payload.get("source")),
            ref=ref,
        )

    email = _address(payload.get("to"))
    provider_id = payload.get("email_id") or ""
    if provider_id and (not isinstance(provider_id, str) or not _ID.match(provider_id)):
        raise ValueError("data.email_id: not an id")
    detail = ""
    if kind == "bounced":
        bounce = payload.get("bounce")
        if isinstance(bounce, Mapping):
            detail = _short(bounce.get("message") or bounce.get("subType"))
            # Resend reports permanent rejections; a transient one must not silence anyone.
            if str(bounce.get("type") or "").lower() in ("transient", "soft"):
                kind = "soft_bounced"
    elif kind == "clicked":
        click = payload.get("click")
        if isinstance(click, Mapping):
            detail = _short(click.get("link"))
    elif kind == "failed":
        failed = payload.get("failed")
        if isinstance(failed, Mapping):
            detail = _short(failed.get("reason"))
    return DeliveryEvent(
        kind=kind,
        contact_key=contact_key(email),
        email=email,
        provider_id=provider_id,
        at=at,
        tags=_tags(payload.get("tags")),
        detail=detail,
        ref=ref,
    )


def contact_flags(event: DeliveryEvent) -> dict[str, Any]:
    """The exit flags an event sets on its contact (nothing for delivery and engagement)."""
    if event.kind == "unsubscribed":
        return {"unsubscribed": True}
    if event.kind in ("bounced", "complained"):
        return {"delivery_state": event.kind}
    return {}


def stronger_state(current: str, new: str) -> str:
    """A complaint outranks a bounce; neither is ever cleared by a later event."""
    order = {"": 0, "bounced": 1, "complained": 2}
    return new if order.get(new, 0) > order.get(current, 0) else current
