"""What the Resend sender sends and reads: an `OutgoingEmail` as Resend's parameters, the
idempotency keys, what makes an email unsendable before any request, and whom a refusal
blames (the email, or the setup every email of a request shares)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from resend.exceptions import ResendError

from xmas_pipeline.core.ports import OutgoingEmail

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 256  # Resend refuses longer idempotency keys (400 invalid_idempotency_key)

_NOT_TAG_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322: printable ASCII except ":"
# Resend's validation errors name the field in backticks ("Invalid `reply_to` field",
# "Missing `emails[3].from` field").
_FIELD = re.compile(r"`(?:emails\[\d+\]\.)?([a-z_]+)`")
# Fields every email of a run carries alike (XMAS_FROM_EMAIL, XMAS_REPLY_TO), and the one
# that is each email's own.
_SHARED_FIELDS = frozenset({"from", "reply_to"})
_OWN_FIELDS = frozenset({"to"})

SETUP = "setup"
MESSAGE = "message"


# -- mapping an OutgoingEmail to Resend's parameters ----------------------------------------


def to_params(email: OutgoingEmail) -> dict[str, Any]:
    params: dict[str, Any] = {
        "from": email.from_email,
        "to": [email.to],
        "subject": email.subject,
    }
    if email.html:
        params["html"] = email.html
    if email.text:
        params["text"] = email.text
    if email.headers:
        params["headers"] = dict(email.headers)
    if email.reply_to:
        params["reply_to"] = [email.reply_to]
    tags = resend_tags(email.tags)
    if tags:
        params["tags"] = tags
    return params


def resend_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags as Resend takes them: `[{"name", "value"}]`.

    Resend allows only ASCII letters, digits, `_` and `-` (at most 256) in tag names and
    values and refuses the email otherwise, so other characters become `_` ("Christmas
    2025" -> "Christmas_2025"). A tag that holds an email address is dropped instead:
    tags show up in Resend's analytics and webhooks, and an address there is personal
    data that a mangled `jane_x_com` would still leak.
    """
    out: list[dict[str, str]] = []
    for name, value in tags.items():
        if "@" in name or "@" in value:
            log.warning("tag dropped: an email address cannot be a Resend tag")
            continue
        clean_name = _NOT_TAG_CHARS.sub("_", name)[:256]
        clean_value = _NOT_TAG_CHARS.sub("_", value)[:256]
        if not clean_name:
            continue
        tag = {"name": clean_name}
        if clean_value:
            tag["value"] = clean_value
        out.append(tag)
    return out


def local_problem(email: OutgoingEmail) -> str:
    """What makes an email unsendable before any request ("" when nothing does).

    Header injection is stopped here as well as upstream: no CR/LF in the subject or in
    any header, and header names must be plain field names.
    """
    if not email.to.strip():
        return "no recipient address"
    for text, what in (
        (email.to, "recipient"),
        (email.from_email, "sender"),
        (email.reply_to, "reply-to"),
    ):
        if "\r" in text or "\n" in text:
            return f"the {what} address contains a line break"
    if "\r" in email.subject or "\n" in email.subject:
        return "the subject contains a line break"
    for name, value in email.headers.items():
        if not _HEADER_NAME.match(name):
            return f"invalid header name {name[:40]!r}"
        if "\r" in value or "\n" in value:
            return f"header {name} contains a line break"
    return ""


def provider_key(idempotency_key: str) -> str:
    """The key sent to Resend: the message's own key, or a stable hash if it is too long."""
    if 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        return idempotency_key
    return "sha256-" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def batch_key(keys: Sequence[str]) -> str:
    """One stable key for a batch: the same emails in the same order give the same key."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return f"batch-{len(keys)}-{digest}"


def refusal_blames(reason: str, emails: Sequence[OutgoingEmail]) -> str:
    """Whom Resend's refusal `reason` blames, when it names a field: SETUP for the sender or
    the reply-to, which every one of `emails` carries alike (so no email of them could go),
    MESSAGE for the recipient; "" when it names neither."""
    fields = set(_FIELD.findall(reason))
    shared = len({e.from_email for e in emails}) == 1 and len({e.reply_to for e in emails}) == 1
    if shared and fields & _SHARED_FIELDS:
        return SETUP
    if fields & _OWN_FIELDS:
        return MESSAGE
    return ""


def describe(exc: ResendError) -> str:
    """A short reason for reports: status, Resend's error name and message (no secrets)."""
    code = status_code(exc)
    name = str(exc.error_type or "error")
    message = " ".join(str(exc.message or "").split())
    if name == "HttpClientError":
        return f"network: {message}"[:300]
    return f"{code} {name}: {message}"[:300]


def status_code(exc: ResendError) -> int:
    try:
        return int(str(exc.code))
    except ValueError:
        return 0
