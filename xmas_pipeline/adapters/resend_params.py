"""An `OutgoingEmail` as Resend's API takes it: parameters, tags, idempotency keys, and
the checks that keep a malformed email from ever reaching the provider."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from xmas_pipeline.core.ports import OutgoingEmail

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 256  # Resend refuses longer idempotency keys (400 invalid_idempotency_key)
_NOT_TAG_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322: printable ASCII except ":"


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
