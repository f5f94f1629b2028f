"""A fake Discord / Slack incoming webhook on 127.0.0.1.

It answers the way the real ones do: Discord 204 with no body (400 JSON when `content`
is empty or over 2,000 characters, 404 JSON for an unknown webhook), Slack 200 `ok`
(400 `no_text`, 404 `no_service`). `fail_with` forces a status (e.g. 429 with
`Retry-After`, or a 500).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

Flavour = Literal["discord", "slack"]


@dataclass
class ChatPost:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ChatWebhookServer:
    flavour: Flavour = "discord"
    token: str = "T0KEN-secret-part"
    fail_with: int | None = None
    posts: list[ChatPost] = field(default_factory=list)
    _server: LoopbackServer | None = None

    @property
    def path(self) -> str:
        if self.flavour == "discord":
            return f"/api/webhooks/1234567890/{self.token}"
        return f"/services/T000/B000/{self.token}"

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self._server.base_url}{self.path}"

    def _answer(self, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if self.fail_with is not None:
            headers = {"Retry-After": "2"} if self.fail_with == 429 else {}
            return self.fail_with, headers, b'{"message": "forced failure"}'
        discord = self.flavour == "discord"
        if path != self.path:
            if discord:
                return 404, {}, b'{"message": "Unknown Webhook", "code": 10015}'
            return 404, {}, b"no_service"
        key = "content" if discord else "text"
        text = body.get(key) if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or (discord and len(text) > 2000):
            if discord:
                return 400, {}, b'{"message": "Cannot send an empty message", "code": 50006}'
            return 400, {}, b"no_text"
        return (204, {}, b"") if discord else (200, {}, b"ok")

    def __enter__(self) -> ChatWebhookServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake.posts.append(ChatPost(self.path, dict(self.headers.items()), body))
                status, headers, payload = fake._answer(self.path, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

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
