"""What a request says about who sent it, for double opt-in's consent records.

The address is the connection's peer as the server sees it (behind a reverse proxy, the
proxy's, unless the server is told to trust its `X-Forwarded-For`: `uvicorn
--forwarded-allow-ips`); what the request itself claims in `X-Forwarded-For` is kept
beside it, as a claim, never in its place.
"""

from __future__ import annotations

from starlette.requests import Request

from xmas_pipeline.core.optin import clean_user_agent

_MAX_ADDRESS = 64
_MAX_FORWARDED = 200


def _printable(value: str, limit: int) -> str:
    return "".join(ch for ch in value if ch.isprintable())[:limit]


def request_details(request: Request) -> dict[str, str]:
    """`ip`, `user_agent` and, when present, `forwarded_for` of this request."""
    details = {
        "ip": _printable(request.client.host if request.client else "", _MAX_ADDRESS),
        "user_agent": clean_user_agent(request.headers.get("user-agent")),
    }
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        details["forwarded_for"] = _printable(forwarded, _MAX_FORWARDED)
    return details
