"""What a request says about who sent it, for double opt-in's consent records.

The address is the client's as the signup guard resolves it (the connection's peer, or
the visitor's address a trusted proxy put in `X-Forwarded-For`: `XMAS_TRUSTED_PROXIES`);
what the request itself claims in `X-Forwarded-For` is kept beside it, as a claim. The
campaign the signup (or click) is for goes with them: ingestion reads it from there (a
file without one, older or dropped by hand, is the default campaign's).
"""

from __future__ import annotations

from starlette.requests import Request

from xmas_pipeline.core.optin import clean_user_agent

_MAX_ADDRESS = 64
_MAX_FORWARDED = 200


def _printable(value: str, limit: int) -> str:
    return "".join(ch for ch in value if ch.isprintable())[:limit]


def request_details(request: Request, campaign: str, client: str | None = None) -> dict[str, str]:
    """`ip` (`client` when the caller resolved it, else the peer), `user_agent` and, when
    present, `forwarded_for` of this request; `campaign`: the slug it is for."""
    peer = request.client.host if request.client else ""
    details = {
        "ip": _printable(client if client is not None else peer, _MAX_ADDRESS),
        "user_agent": clean_user_agent(request.headers.get("user-agent")),
        "campaign": campaign,
    }
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        details["forwarded_for"] = _printable(forwarded, _MAX_FORWARDED)
    return details
