"""`GET`/`POST /unsubscribe?token=...`: one-click unsubscribe (RFC 8058).

GET only shows a confirmation page (link scanners and previews follow GETs); POST
unsubscribes. Mail clients' one-click POST carries `List-Unsubscribe=One-Click` as
its body; the page's own button posts `source=page`.

An unsubscribe is recorded as one file in `inbox/email-events/<day>/`, in the same
envelope as a Resend event so that one reader handles both::

    {"type": "contact.unsubscribed",
     "created_at": "2025-12-01T10:00:00.123456+00:00",
     "data": {"email": "jane@example.com", "source": "one-click"}}

`data.email` is the contact key (lower-cased address); `data.source` is `one-click`
(a mail client's RFC 8058 POST) or `page` (the button on the confirmation page).
Posting again records the event again; ingesting it twice changes nothing.

Tokens are checked with `XMAS_UNSUBSCRIBE_SECRET`, or without it with the key the
deployment generated and keeps in the SQL store (`adapters.sql.secrets`): the same key the
run workers sign the links with. It is looked up once, on the first unsubscribe request.
On PostgreSQL the intake only reads it (its role may create nothing): until the migrate
step has made the table and the key, unsubscribing answers 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from html import escape
from urllib.parse import parse_qs, urlencode

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from xmas_pipeline.adapters.sql.engine import creates_its_tables, make_engine
from xmas_pipeline.adapters.sql.secrets import (
    SigningKeyMissing,
    read_unsubscribe_keys,
    unsubscribe_keys,
)
from xmas_pipeline.core.unsubscribe import SigningKeys, key_id_of, verify_token
from xmas_pipeline.intake.http import Reject, read_body
from xmas_pipeline.intake.storage import EventStore
from xmas_pipeline.settings import Settings

logger = logging.getLogger("xmas_pipeline.intake")

PATH = "/unsubscribe"
EVENT_TYPE = "contact.unsubscribed"
# A link naming a key id not known yet makes the keys be read again, at most this often.
RELOAD_EVERY_S = 60.0

# The token rides in the URL: keep it out of referrers and caches; the page needs no
# scripts, frames or outside resources.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "color:#222}button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}"
)


def page(
    title: str, body_html: str, status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<meta name=robots content=noindex><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body_html}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={**_PAGE_HEADERS, **(headers or {})})


def unsubscribe_event(email: str, source: str, moment: datetime | None = None) -> bytes:
    event = {
        "type": EVENT_TYPE,
        "created_at": (moment or datetime.now(UTC)).isoformat(),
        "data": {"email": email, "source": source},
    }
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


class UnsubscribeEndpoint:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self._secret: SigningKeys | None = None
        self._secret_lock = threading.Lock()
        self._reloaded_at = -RELOAD_EVERY_S  # the first unknown key id is looked up

    def _load_secret(self, again: bool = False) -> SigningKeys:
        """The signing keys: a configured key alone needs no database; otherwise they are
        looked up in the store on first use (the lock keeps concurrent first requests to
        one lookup), and again when a link names a key id not known yet (a rotation
        since), at most once a minute. A failed lookup is tried again next time."""
        with self._secret_lock:
            stale = again and time.monotonic() - self._reloaded_at > RELOAD_EVERY_S
            if self._secret is None or stale:
                configured = self.settings.reveal("unsubscribe_secret")
                if configured and not again:
                    self._secret = SigningKeys.of(configured)
                else:
                    url = self.settings.database_url
                    # Dev (SQLite) makes the key on first use; production only reads it.
                    load = unsubscribe_keys if creates_its_tables(url) else read_unsubscribe_keys
                    engine = make_engine(url)
                    try:
                        self._secret = load(configured, url, engine)
                    finally:
                        engine.dispose()
                    if again:  # only lookups for unknown ids are limited
                        self._reloaded_at = time.monotonic()
            return self._secret

    async def _signing_key(self, token: str | None = None) -> SigningKeys:
        return await self.signing_keys(key_id_of(token or "") or "0" if token else "")

    async def signing_keys(self, key_id: str = "") -> SigningKeys:
        """The signing keys (also double opt-in's, `intake.confirm`): read again, at most
        once a minute, when `key_id` names a key not known yet. `Reject` 503 while the
        store holding a generated key cannot be read."""
        unknown = bool(key_id) and self._secret is not None and not self._secret.get(key_id)
        if self._secret is not None and not unknown:
            return self._secret
        try:
            # A database round trip: off the event loop.
            return await run_in_threadpool(self._load_secret, unknown)
        except SigningKeyMissing:
            logger.error(
                "no unsubscribe signing key in the store yet: run `xmas-pipeline store migrate`"
            )
            raise Reject(503, "unsubscribe is unavailable right now; please try again") from None
        except (SQLAlchemyError, OSError):
            logger.exception("could not read the unsubscribe signing key from the store")
            raise Reject(503, "unsubscribe is unavailable right now; please try again") from None

    async def _verified(self, token: str | None) -> str | Response:
        """The address a genuine token names, or the page that says why there is none."""
        try:
            secret = await self._signing_key(token)
        except Reject as exc:
            return page("Unsubscribe unavailable", f"<p>{escape(exc.reason)}.</p>", exc.status)
        email = verify_token(token, secret) if token else None
        return _invalid_link() if email is None else email

    async def get(self, request: Request) -> Response:
        token = request.query_params.get("token")
        email = await self._verified(token)
        if isinstance(email, Response):
            return email
        action = f"?{urlencode({'token': token})}"
        return page(
            "Unsubscribe",
            f"<p>Stop all emails from us to <strong>{escape(email)}</strong>?</p>"
            f'<form method=post action="{escape(action)}">'
            "<input type=hidden name=source value=page>"
            "<button type=submit>Unsubscribe</button></form>",
        )

    async def post(self, request: Request) -> Response:
        body = await read_body(request, self.settings.intake_max_body_bytes)
        try:
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:  # too many fields: not a form we sent, nor a mail client's
            form = {}
        token = request.query_params.get("token") or next(iter(form.get("token", [])), None)
        email = await self._verified(token)
        if isinstance(email, Response):
            return email
        source = "page" if form.get("source") == ["page"] else "one-click"
        try:
            await self.store.put("email-events", unsubscribe_event(email, source))
        except Reject as exc:
            return page("Please try again", f"<p>{escape(exc.reason)}.</p>", exc.status)
        return page(
            "You are unsubscribed",
            f"<p>We will send no more emails to <strong>{escape(email)}</strong>.</p>",
        )


def _invalid_link() -> HTMLResponse:
    return page(
        "Link not valid",
        "<p>This unsubscribe link is not valid. Please use the link from your latest email, "
        "or reply to it and we will remove you by hand.</p>",
        400,
    )
