"""Forgetting a person: the address checked, its salted hash, and finding it in text.

After `xmas-pipeline forget` only `forgotten_hash` of the address is kept (with a salt the
deployment generated once), so a later signup or send for the same address can be
recognised and refused without the address itself being stored anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import EmailStr, TypeAdapter, ValidationError

from xmas_pipeline.core.signup import contact_key

_EMAIL = TypeAdapter(EmailStr)
# Address-like tokens in free text: ids such as `campaign/jane@x.com/email-1` hold one.
_TOKEN = re.compile(r"[A-Za-z0-9.!#$%&'*+=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def checked_address(text: str) -> str:
    """The contact key of a well-formed address; ValueError with the reason otherwise."""
    candidate = (text or "").strip()
    if not candidate:
        raise ValueError("no email address given")
    try:
        _EMAIL.validate_python(candidate)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"] if exc.errors() else "not an email address"
        raise ValueError(f"{candidate!r} is not a valid email address: {reason}") from exc
    return contact_key(candidate)


def forgotten_hash(salt: str, key: str) -> str:
    """The suppression list's entry for a contact key (hex SHA-256 of salt and key)."""
    return hashlib.sha256(f"{salt}\n{contact_key(key)}".encode()).hexdigest()


def mentions(text: str, key: str) -> bool:
    """Whether `text` holds the address `key` (any case) as a whole address."""
    if not text or key not in text.lower():
        return False
    return any(token.lower() == key for token in _TOKEN.findall(text))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def file_mentions(raw: bytes, key: str) -> bool:
    """Whether an inbox file holds the address: every string of its JSON; a file that
    is not JSON (kept for someone to fix) is searched as text."""
    text = raw.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return mentions(text, key)
    return any(mentions(s, key) for s in _strings(payload))
