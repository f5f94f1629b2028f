"""Signed unsubscribe tokens: checkable with the secret alone, no database lookup.

A token is ``<email>.<mac>``, both parts base64url without padding, where the email is
the contact key (lower-cased address) and the mac is HMAC-SHA256 over a purpose label
plus the email. Tokens never expire: an unsubscribe link must keep working for as long
as the email that carries it can be opened (RFC 8058).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from urllib.parse import urlencode, urlsplit

# Domain separation: the same secret could sign other things later without collisions.
_PURPOSE = b"xmas-pipeline/unsubscribe/v1\n"
_MAC_CHARS = 43  # 32 bytes of SHA-256, base64url without padding
_MAX_TOKEN = 1024  # emails are at most 254 characters; anything longer is garbage
_SHAPE = re.compile(rf"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{{{_MAC_CHARS}}}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    return secret.encode("utf-8")


def _mac(email: str, secret: str) -> bytes:
    return hmac.new(_key(secret), _PURPOSE + email.encode("utf-8"), hashlib.sha256).digest()


def make_token(email: str, secret: str) -> str:
    """A URL-safe token naming the contact (its lower-cased email)."""
    key = email.strip().lower()
    if not key:
        raise ValueError("cannot make an unsubscribe token for an empty email")
    return f"{_b64(key.encode('utf-8'))}.{_b64(_mac(key, secret))}"


def verify_token(token: str, secret: str) -> str | None:
    """The email a genuine token names, or None for anything forged, altered or malformed."""
    _key(secret)  # a missing secret is a configuration error, not a bad token
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _SHAPE.fullmatch(token):
        return None
    encoded_email, encoded_mac = token.split(".")
    try:
        email = _unb64(encoded_email).decode("utf-8")
        given = _unb64(encoded_mac)
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(given, _mac(email, secret)):
        return None
    return email


def unsubscribe_url(public_url: str, email: str, secret: str) -> str:
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
