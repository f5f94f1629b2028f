"""A fake Discord / Slack incoming webhook (or a plain JSON receiver) on 127.0.0.1.

It answers the way the real ones do, and checks bodies against their documented limits:

- Discord: 204 with no body for a valid message; 400 JSON `{"code": 50006}` for an empty
  one (neither content nor embeds), 400 JSON `{"code": 50035, "errors": ...}` for an
  invalid form (content over 2,000 characters; over 10 embeds; an embed title over 256, a
  description over 4,096, over 25 fields, a field name over 256 or value over 1,024, a
  footer over 2,048, an author name over 256, over 6,000 characters in all; a colour that
  is not an integer in 0..0xFFFFFF; a non-http(s) embed url; wrong types), 404 JSON for an
  unknown webhook.
- Slack: 200 `ok`; 400 `no_text` when there is neither `text` nor `blocks`,
  `invalid_blocks` for blocks outside Block Kit's rules (unknown type, over 50 blocks, a
  header over 150 or not `plain_text`, a section with neither text nor fields, over 10
  fields or one over 2,000, text objects of another type or over 3,000, a button text over
  75 or url over 3,000), `invalid_payload` for a body that is not a JSON object; 404
  `no_service` for an unknown webhook.
- json: any JSON object gets 200 `{"ok": true}`.

`fail_with` forces a status (e.g. 429 with `Retry-After`, or a 500).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

Flavour = Literal["discord", "slack", "json"]

# Discord's documented limits (Message resource, "Embed Limits"; Execute Webhook).
DISCORD_CONTENT = 2000
DISCORD_EMBEDS = 10
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER = 2048
DISCORD_AUTHOR = 256
DISCORD_TOTAL = 6000
DISCORD_COLOR_MAX = 0xFFFFFF

# Slack's documented Block Kit limits (blocks reference; text object; button element).
SLACK_BLOCKS = 50
SLACK_HEADER = 150
SLACK_SECTION_TEXT = 3000
SLACK_SECTION_FIELDS = 10
SLACK_FIELD_TEXT = 2000
SLACK_TEXT_OBJECT = 3000
SLACK_CONTEXT_ELEMENTS = 10
SLACK_ACTIONS_ELEMENTS = 25
SLACK_BUTTON_TEXT = 75
SLACK_BUTTON_URL = 3000
SLACK_BLOCK_ID = 255
# Block types a message may carry; only those this project could send are checked deeply.
SLACK_BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "markdown",
    "rich_text",
    "section",
    "video",
}


class _Invalid(Exception):
    """Where a body breaks a rule: a path of keys and indexes, Discord's code, a message."""

    def __init__(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        super().__init__(f"{'.'.join(map(str, path))}: {message}")
        self.path = path
        self.code = code
        self.message = message


def _string(value: Any, path: tuple[str | int, ...], limit: int, *, required: bool) -> int:
    """The length of a string within `limit` (0 when absent and optional)."""
    if value is None and not required:
        return 0
    if not isinstance(value, str):
        raise _Invalid(
            path,
            "BASE_TYPE_REQUIRED" if value is None else "STRING_TYPE_CONVERT",
            "This field is required" if value is None else "Must be a string.",
        )
    if required and not value.strip():
        raise _Invalid(path, "BASE_TYPE_REQUIRED", "This field is required")
    if len(value) > limit:
        raise _Invalid(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    return len(value)


def _object(value: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
    return value


def _array(value: Any, path: tuple[str | int, ...], limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(value) > limit:
        raise _Invalid(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    return value


def _discord_embed(embed: Any, path: tuple[str | int, ...]) -> int:
    """Check one embed; the number of characters it counts towards the 6,000."""
    embed = _object(embed, path)
    total = _string(embed.get("title"), (*path, "title"), DISCORD_TITLE, required=False)
    total += _string(
        embed.get("description"), (*path, "description"), DISCORD_DESCRIPTION, required=False
    )
    url = embed.get("url")
    if url is not None:
        _string(url, (*path, "url"), 2048, required=True)
        if not url.lower().startswith(("http://", "https://")):
            scheme = url.split(":", 1)[0]
            raise _Invalid(
                (*path, "url"),
                "URL_TYPE_INVALID_SCHEME",
                f"Scheme \"{scheme}\" is not supported. Scheme must be one of ('http', 'https').",
            )
    color = embed.get("color")
    if color is not None:
        if not isinstance(color, int) or isinstance(color, bool):
            raise _Invalid((*path, "color"), "NUMBER_TYPE_COERCE", f'Value "{color}" is not int.')
        if not 0 <= color <= DISCORD_COLOR_MAX:
            raise _Invalid(
                (*path, "color"),
                "NUMBER_TYPE_MAX",
                f"int value should be between 0 and {DISCORD_COLOR_MAX}.",
            )
    if "footer" in embed:
        footer = _object(embed["footer"], (*path, "footer"))
        total += _string(
            footer.get("text"), (*path, "footer", "text"), DISCORD_FOOTER, required=True
        )
    if "author" in embed:
        author = _object(embed["author"], (*path, "author"))
        total += _string(
            author.get("name"), (*path, "author", "name"), DISCORD_AUTHOR, required=True
        )
    if "fields" in embed:
        fields = _array(embed["fields"], (*path, "fields"), DISCORD_FIELDS)
        for i, item in enumerate(fields):
            where = (*path, "fields", i)
            item = _object(item, where)
            total += _string(item.get("name"), (*where, "name"), DISCORD_FIELD_NAME, required=True)
            total += _string(
                item.get("value"), (*where, "value"), DISCORD_FIELD_VALUE, required=True
            )
            if "inline" in item and not isinstance(item["inline"], bool):
                raise _Invalid(
                    (*where, "inline"), "BASE_TYPE_BOOLEAN", "Must be either true or false."
                )
    return total


def _discord_check(body: Any) -> None:
    """Raise _Invalid where Discord's Execute Webhook would refuse `body`."""
    content = body.get("content")
    _string(content, ("content",), DISCORD_CONTENT, required=False)
    embeds = body.get("embeds")
    total = 0
    if embeds is not None:
        for i, embed in enumerate(_array(embeds, ("embeds",), DISCORD_EMBEDS)):
            total += _discord_embed(embed, ("embeds", i))
        if total > DISCORD_TOTAL:
            raise _Invalid(
                ("embeds",),
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {DISCORD_TOTAL}",
            )
    mentions = body.get("allowed_mentions")
    if mentions is not None:
        mentions = _object(mentions, ("allowed_mentions",))
        parse = _array(mentions.get("parse", []), ("allowed_mentions", "parse"), 3)
        for i, kind in enumerate(parse):
            if kind not in ("users", "roles", "everyone"):
                raise _Invalid(
                    ("allowed_mentions", "parse", i),
                    "ENUM_TYPE_COERCE",
                    f'Value "{kind}" is not a valid enum value.',
                )


def discord_refusal(body: Any) -> tuple[int, dict[str, Any]] | None:
    """Discord's answer to an invalid Execute Webhook body (status, JSON), or None when
    the body is one Discord accepts."""
    if not isinstance(body, dict):
        return 400, {"message": "The request body contains invalid JSON.", "code": 50109}
    try:
        _discord_check(body)
    except _Invalid as invalid:
        errors: dict[str, Any] = {"_errors": [{"code": invalid.code, "message": invalid.message}]}
        for key in reversed(invalid.path):
            errors = {str(key): errors}
        return 400, {"message": "Invalid Form Body", "code": 50035, "errors": errors}
    content = body.get("content")
    if not (isinstance(content, str) and content.strip()) and not body.get("embeds"):
        return 400, {"message": "Cannot send an empty message", "code": 50006}
    return None


def _slack_text(obj: Any, path: tuple[str | int, ...], limit: int, kinds: set[str]) -> None:
    obj = _object(obj, path)
    if obj.get("type") not in kinds:
        raise _Invalid((*path, "type"), "invalid_type", f"must be one of {sorted(kinds)}")
    _string(obj.get("text"), (*path, "text"), min(limit, SLACK_TEXT_OBJECT), required=True)
    if "emoji" in obj and (obj["type"] != "plain_text" or not isinstance(obj["emoji"], bool)):
        raise _Invalid((*path, "emoji"), "invalid", "emoji is a boolean, for plain_text only")
    if "verbatim" in obj and (obj["type"] != "mrkdwn" or not isinstance(obj["verbatim"], bool)):
        raise _Invalid((*path, "verbatim"), "invalid", "verbatim is a boolean, for mrkdwn only")


_ANY_TEXT = {"plain_text", "mrkdwn"}


def _slack_block(block: Any, path: tuple[str | int, ...]) -> None:
    block = _object(block, path)
    kind = block.get("type")
    if kind not in SLACK_BLOCK_TYPES:
        raise _Invalid((*path, "type"), "unknown_block_type", f"unknown block type {kind!r}")
    if "block_id" in block:
        _string(block["block_id"], (*path, "block_id"), SLACK_BLOCK_ID, required=True)
    if kind == "header":
        _slack_text(block.get("text"), (*path, "text"), SLACK_HEADER, {"plain_text"})
    elif kind == "section":
        if block.get("text") is None and not block.get("fields"):
            raise _Invalid(path, "missing_text", "a section needs text or fields")
        if block.get("text") is not None:
            _slack_text(block["text"], (*path, "text"), SLACK_SECTION_TEXT, _ANY_TEXT)
        if "fields" in block:
            fields = _array(block["fields"], (*path, "fields"), SLACK_SECTION_FIELDS)
            for i, item in enumerate(fields):
                _slack_text(item, (*path, "fields", i), SLACK_FIELD_TEXT, _ANY_TEXT)
        if "accessory" in block:
            _object(block["accessory"], (*path, "accessory"))
    elif kind == "context":
        elements = _array(block.get("elements"), (*path, "elements"), SLACK_CONTEXT_ELEMENTS)
        if not elements:
            raise _Invalid((*path, "elements"), "min_items", "at least one element")
        for i, element in enumerate(elements):
            where = (*path, "elements", i)
            if _object(element, where).get("type") == "image":
                _string(element.get("alt_text"), (*where, "alt_text"), 2000, required=True)
            else:
                _slack_text(element, where, SLACK_TEXT_OBJECT, _ANY_TEXT)
    elif kind == "actions":
        elements = _array(block.get("elements"), (*path, "elements"), SLACK_ACTIONS_ELEMENTS)
        for i, element in enumerate(elements):
            where = (*path, "elements", i)
            if _object(element, where).get("type") == "button":
                _slack_text(
                    element.get("text"), (*where, "text"), SLACK_BUTTON_TEXT, {"plain_text"}
                )
                _string(element.get("url"), (*where, "url"), SLACK_BUTTON_URL, required=False)


def slack_refusal(body: Any) -> str | None:
    """Slack's error for an invalid incoming-webhook body, or None when it is accepted."""
    if not isinstance(body, dict):
        return "invalid_payload"
    text, blocks = body.get("text"), body.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    if blocks is not None:
        if not isinstance(blocks, list):
            return "invalid_blocks_format"
        try:
            for i, block in enumerate(_array(blocks, ("blocks",), SLACK_BLOCKS)):
                _slack_block(block, ("blocks", i))
        except _Invalid:
            return "invalid_blocks"
    if not (text and text.strip()) and not blocks:
        return "no_text"
    return None


@dataclass
class ChatPost:
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0  # what the fake answered


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
        if self.flavour == "slack":
            return f"/services/T000/B000/{self.token}"
        return f"/hooks/alerts/{self.token}"

    @property
    def accepted(self) -> list[ChatPost]:
        """The posts the chat took (a 2xx answer)."""
        return [post for post in self.posts if 200 <= post.status < 300]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"{self._server.base_url}{self.path}"

    def _answer(self, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if self.fail_with is not None:
            headers = {"Retry-After": "2"} if self.fail_with == 429 else {}
            return self.fail_with, headers, b'{"message": "forced failure"}'
        if self.flavour == "discord":
            if path != self.path:
                return 404, {}, b'{"message": "Unknown Webhook", "code": 10015}'
            refusal = discord_refusal(body)
            if refusal is not None:
                status, error = refusal
                return status, {}, json.dumps(error).encode()
            return 204, {}, b""
        if self.flavour == "slack":
            if path != self.path:
                return 404, {}, b"no_service"
            error = slack_refusal(body)
            return (400, {}, error.encode()) if error else (200, {}, b"ok")
        if path != self.path:
            return 404, {}, b'{"error": "not found"}'
        if not isinstance(body, dict):
            return 400, {}, b'{"error": "expected a JSON object"}'
        return 200, {}, b'{"ok": true}'

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
                status, headers, payload = fake._answer(self.path, body)
                fake.posts.append(ChatPost(self.path, dict(self.headers.items()), body, status))
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
