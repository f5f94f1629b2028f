"""A fake bot-check `siteverify` endpoint (Cloudflare Turnstile or hCaptcha) on 127.0.0.1.

It answers the way the real ones do (their server-side validation docs):

- `POST /siteverify` (Turnstile's path: `/turnstile/v0/siteverify`), form-encoded
  `secret`, `response`, optional `remoteip` (Turnstile also takes a JSON body). Any
  other method: 405.
- Always HTTP 200 with JSON; `success` and `error-codes`:
  - no secret: `missing-input-secret`; a wrong one: `invalid-input-secret`;
  - no response: `missing-input-response`; one never issued (or over 2,048 characters on
    Turnstile): `invalid-input-response`;
  - a token used before: Turnstile `timeout-or-duplicate`, hCaptcha
    `invalid-or-already-seen-response`; one older than `token_ttl_s` (300 s, as both
    issue them): Turnstile `timeout-or-duplicate`, hCaptcha `expired-input-response`.
  - On success: Turnstile adds `challenge_ts`, `hostname`, `action`, `cdata`; hCaptcha
    `challenge_ts`, `hostname`, `credit`.
- Tokens are single-use: a token is spent by its first verification, passed or not
  (Turnstile and hCaptcha both consume a token whatever the secret's outcome once the
  secret is right).

`issue()` makes a token as a solved widget would; `fail_with(status)` makes every answer
an HTTP error (an outage); `checks` records each verification (the remote ip, the outcome;
never the secret in clear, only whether it matched).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

Provider = Literal["turnstile", "hcaptcha"]
PATHS = {"turnstile": "/turnstile/v0/siteverify", "hcaptcha": "/siteverify"}
TURNSTILE_MAX_TOKEN = 2048
TOKEN_TTL_S = 300.0


@dataclass
class Check:
    remote_ip: str | None
    secret_ok: bool
    success: bool
    codes: list[str]


class CaptchaVerifyServer:
    def __init__(
        self,
        secret: str,
        provider: Provider = "turnstile",
        *,
        clock: Callable[[], float] = time.monotonic,
        token_ttl_s: float = TOKEN_TTL_S,
    ) -> None:
        self.secret = secret
        self.provider = provider
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.checks: list[Check] = []
        self._issued: dict[str, float] = {}
        self._spent: set[str] = set()
        self._failure: int | None = None
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.base_url + PATHS[self.provider]

    def issue(self) -> str:
        """A fresh token, as the widget hands one to the page once a visitor passes."""
        prefix = "0." if self.provider == "turnstile" else "P1_"
        token = prefix + secrets.token_urlsafe(48)
        with self._lock:
            self._issued[token] = self.clock()
        return token

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this HTTP status (None: back to normal)."""
        self._failure = status

    def _verify(self, form: dict[str, str]) -> dict[str, Any]:
        secret, token = form.get("secret", ""), form.get("response", "")
        codes: list[str] = []
        if not secret:
            codes.append("missing-input-secret")
        elif not secrets.compare_digest(secret.encode(), self.secret.encode()):
            codes.append("invalid-input-secret")
        if not token:
            codes.append("missing-input-response")
        elif self.provider == "turnstile" and len(token) > TURNSTILE_MAX_TOKEN:
            codes.append("invalid-input-response")
        if not codes:
            with self._lock:
                issued = self._issued.get(token)
                if issued is None:
                    codes.append("invalid-input-response")
                elif token in self._spent:
                    codes.append(
                        "timeout-or-duplicate"
                        if self.provider == "turnstile"
                        else "invalid-or-already-seen-response"
                    )
                elif self.clock() - issued > self.token_ttl_s:
                    codes.append(
                        "timeout-or-duplicate"
                        if self.provider == "turnstile"
                        else "expired-input-response"
                    )
                self._spent.add(token)
        self.checks.append(
            Check(
                remote_ip=form.get("remoteip"),
                secret_ok=bool(secret) and secret == self.secret,
                success=not codes,
                codes=codes,
            )
        )
        if codes:
            return {"success": False, "error-codes": codes}
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if self.provider == "turnstile":
            return {
                "success": True,
                "challenge_ts": stamp,
                "hostname": "www.example.com",
                "error-codes": [],
                "action": "",
                "cdata": "",
            }
        return {
            "success": True,
            "challenge_ts": stamp,
            "hostname": "www.example.com",
            "credit": False,
        }

    def __enter__(self) -> CaptchaVerifyServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply(405, b'{"success": false, "error-codes": ["bad-request"]}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if fake._failure is not None:
                    self._reply(fake._failure, b"upstream trouble")
                    return
                if self.path.split("?", 1)[0] != PATHS[fake.provider]:
                    self._reply(404, b'{"error": "not found"}')
                    return
                kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                form: dict[str, str] = {}
                if kind == "application/x-www-form-urlencoded":
                    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
                elif kind == "application/json" and fake.provider == "turnstile":
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    if isinstance(body, dict):
                        form = {k: str(v) for k, v in body.items() if v is not None}
                else:
                    answer = {"success": False, "error-codes": ["bad-request"]}
                    self._reply(200, json.dumps(answer).encode())
                    return
                self._reply(200, json.dumps(fake._verify(form)).encode())

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = LoopbackServer(Handler).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.stop()
