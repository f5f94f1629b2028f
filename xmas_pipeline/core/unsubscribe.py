"""Signed unsubscribe tokens: checkable with the keys alone, no database lookup.

A token is ``<email>.<mac>.<key id>``: the email (the contact key, lower-cased address)
and the mac base64url without padding, the mac HMAC-SHA256 over a purpose label, the key
id and the email, with the key of that id. Keys rotate (`SigningKeys`: a new current key,
the old ones kept for checking), so links already sent keep working. Tokens made before
key ids, ``<email>.<mac>`` (mac over the first purpose label and the email), are checked
with the oldest key, the one they were signed with. Tokens never expire: an unsubscribe
link must keep working for as long as the email that carries it can be opened (RFC 8058).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

# Domain separation: the same secret could sign other things later without collisions.
_PURPOSE = b"xmas-pipeline/unsubscribe/v1\n"
_PURPOSE_KEYED = b"xmas-pipeline/unsubscribe/v2\n"
_MAC_CHARS = 43  # 32 bytes of SHA-256, base64url without padding
_MAX_TOKEN = 1024  # emails are at most 254 characters; anything longer is garbage
_SHAPE = re.compile(rf"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{{{_MAC_CHARS}}}(\.[0-9]{{1,9}})?")


@dataclass(frozen=True)
class SigningKeys:
    """The unsubscribe keys, oldest first, as (key id, secret); the last signs."""

    keys: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("no unsubscribe signing key")

    @classmethod
    def of(cls, keys: str | SigningKeys) -> SigningKeys:
        """A lone secret is the oldest key, id "0"."""
        return keys if isinstance(keys, SigningKeys) else cls((("0", keys),))

    @property
    def current(self) -> tuple[str, str]:
        return self.keys[-1]

    @property
    def oldest(self) -> str:
        return self.keys[0][1]

    def get(self, key_id: str) -> str | None:
        return dict(self.keys).get(key_id)


def key_id_of(token: str) -> str:
    """The key id a well-shaped token names ("" for one without)."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _SHAPE.fullmatch(token):
        return ""
    parts = token.split(".")
    return parts[2] if len(parts) == 3 else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    return secret.encode("utf-8")


def _mac(email: str, secret: str, key_id: str | None = None) -> bytes:
    label = _PURPOSE if key_id is None else _PURPOSE_KEYED + key_id.encode("ascii") + b"\n"
    return hmac.new(_key(secret), label + email.encode("utf-8"), hashlib.sha256).digest()


def make_token(email: str, keys: str | SigningKeys) -> str:
    """A URL-safe token naming the contact (its lower-cased email). With `SigningKeys` it
    carries the current key's id; a lone secret makes the keyless form of before."""
    key = email.strip().lower()
    if not key:
        raise ValueError("cannot make an unsubscribe token for an empty email")
    encoded = _b64(key.encode("utf-8"))
    if isinstance(keys, str):
        return f"{encoded}.{_b64(_mac(key, keys))}"
    key_id, secret = keys.current
    return f"{encoded}.{_b64(_mac(key, secret, key_id))}.{key_id}"


def verify_token(token: str, keys: str | SigningKeys) -> str | None:
    """The email a genuine token names, or None for anything forged, altered or malformed
    (or signed with a key id these keys do not have)."""
    ring = SigningKeys.of(keys)
    for _, secret in ring.keys:
        _key(secret)  # a missing secret is a configuration error, not a bad token
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _SHAPE.fullmatch(token):
        return None
    encoded_email, encoded_mac, *rest = token.split(".")
    key_id = rest[0] if rest else None
    secret = ring.oldest if key_id is None else ring.get(key_id)
    if secret is None:
        return None
    try:
        email = _unb64(encoded_email).decode("utf-8")
        given = _unb64(encoded_mac)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _mac(email, secret, key_id)):
        return None
    return email


def unsubscribe_url(public_url: str, email: str, secret: str | SigningKeys) -> str:
    """The link (and List-Unsubscribe target) for one contact."""
    query = urlencode({"token": make_token(email, secret)})
    return f"{public_url.rstrip('/')}/unsubscribe?{query}"


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_url_problem(url: str | None) -> str:
    """Why unsubscribe links on `url` would not work for real readers ("" when they do):
    it must be the intake's https address; a loopback http address is allowed for tests."""
    if not url:
        return "XMAS_PUBLIC_URL is not set"
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return ""
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return ""
    return f"XMAS_PUBLIC_URL is not an https address ({parts.scheme}://{parts.hostname or ''})"
