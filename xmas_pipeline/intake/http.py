"""Request plumbing shared by the endpoints: capped body reads, JSON parsing, bearer auth."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

logger = logging.getLogger("xmas_pipeline.intake")

BODY_TIMEOUT_SECONDS = 30.0
# A request carrying any of these came through a proxy, whatever address it came from.
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


class Reject(Exception):
    """An answer other than success, with a reason safe to show the caller."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        # More of the answer, beside the reason (e.g. the campaigns an unknown one is not).
        self.details = details or {}


def rejection(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Reject)
    # The path only: a query string may hold an unsubscribe token.
    logger.info("rejected %s %s: %d %s", request.method, request.url.path, exc.status, exc.reason)
    return JSONResponse(
        {**exc.details, "status": "rejected", "reason": exc.reason},
        status_code=exc.status,
        headers=exc.headers,
    )


async def read_body(request: Request, limit: int, timeout: float = BODY_TIMEOUT_SECONDS) -> bytes:
    """The raw body, refusing (413) as soon as it passes `limit` bytes.

    A body that trickles in for longer than `timeout` seconds gets 408, so slow senders
    cannot hold connections open for ever.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Reject(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Reject(413, f"body larger than {limit} bytes")
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:  # chunked bodies declare no length: stop reading here
                    raise Reject(413, f"body larger than {limit} bytes")
    except ClientDisconnect:
        raise Reject(400, "client disconnected before sending the whole body") from None
    except TimeoutError:
        raise Reject(408, "body not received in time") from None
    return bytes(body)


def check_json_content_type(request: Request) -> None:
    """415 for bodies declared as something else (forms, XML...).

    `text/plain` and a missing type are let through: a browser's no-preflight POST
    (fetch with `no-cors`, `sendBeacon`) labels a JSON string as `text/plain`.
    """
    raw = request.headers.get("content-type")
    if raw is None:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media in ("application/json", "text/plain", ""):
        return
    if media.startswith("application/") and media.endswith("+json"):
        return
    raise Reject(415, "send the body as application/json")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no absurd nesting or numbers."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise Reject(400, "body is not valid JSON") from None


def check_bearer(request: Request, token: str | None) -> None:
    """401 unless `Authorization: Bearer <token>` (scheme in any case) matches; no-op if unset."""
    if not token:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Reject(401, "missing bearer token", challenge)
    # Starlette decodes header bytes as latin-1; re-encoding gives back the bytes sent.
    given = credentials.strip().encode("latin-1")
    if not hmac.compare_digest(given, token.encode("utf-8")):
        raise Reject(401, "wrong bearer token", challenge)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only: 127.0.0.0/8, ::1 (IPv4-mapped too), `localhost`."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:  # any other host name: it may well resolve to a public address
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def direct_from_loopback(request: Request) -> bool:
    """Whether the request came from this machine itself, not relayed by a proxy on it."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    return request.client is not None and is_loopback(request.client.host)
