"""Which web origins may post signups from a browser (`XMAS_SIGNUP_ALLOWED_ORIGINS`)."""

from __future__ import annotations

import re

# scheme://host[:port], nothing after: what a browser sends in `Origin`.
_ORIGIN = re.compile(r"^https?://[a-z0-9.\-]+(:\d{1,5})?$|^https?://\[[0-9a-f:.]+\](:\d{1,5})?$")
ANY = "*"


def parse_origins(text: str) -> tuple[str, ...]:
    """Comma-separated origins (`https://www.example.com`), lower-cased and without a
    trailing slash; `*` alone allows every origin."""
    origins: list[str] = []
    for part in text.split(","):
        entry = part.strip().rstrip("/").lower()
        if not entry:
            continue
        if entry == ANY:
            origins.append(ANY)
            continue
        if not _ORIGIN.match(entry):
            raise ValueError(
                "holds an entry that is not an origin: scheme://host[:port], e.g."
                " https://www.example.com"
            )
        origins.append(entry)
    if ANY in origins and len(origins) > 1:
        raise ValueError("* allows every origin: give it alone or list origins")
    return tuple(dict.fromkeys(origins))


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request's `Origin` header value is on the list (`null` never is unless
    listed; `*` allows all)."""
    if ANY in allowed:
        return True
    return origin.strip().rstrip("/").lower() in allowed
