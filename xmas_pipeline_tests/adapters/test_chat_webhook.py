"""CRITICAL-signup alerts: the message each chat reads, and its delivery to the webhook.

Each payload is checked field by field against the shape its chat documents, then posted
to the fake of that chat, which refuses what the real service refuses.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator

import httpx
import pytest

from xmas_pipeline.adapters.chat_webhook import (
    RED,
    AlertError,
    ChatFlavour,
    chat_flavour,
    format_critical_alert,
    format_ops_alert,
    post_alert,
)
from xmas_pipeline.core.signup import Signup
from xmas_pipeline_tests.fakes.chat_webhook import (
    DISCORD_FIELD_VALUE,
    DISCORD_TITLE,
    DISCORD_TOTAL,
    SLACK_FIELD_TEXT,
    SLACK_HEADER,
    ChatWebhookServer,
    Flavour,
    discord_refusal,
    slack_refusal,
)

SIREN = "\N{POLICE CARS REVOLVING LIGHT}"


def critical(**overrides: object) -> Signup:
    fields: dict[str, object] = {
        "email": "Jane@Example.com",
        "first_name": "Jane",
        "business_name": "Acme Plumbing",
        "assessment_score": 38,
        "red_systems": 3,
        "orange_systems": 1,
        "yellow_systems": 2,
        "green_systems": 2,
        "weakest_system_1": "Marketing",
        "weakest_system_2": "Sales",
        "revenue_leak_total": 12500,
    }
    fields.update(overrides)
    return Signup.model_validate(fields)


def hostile(**overrides: object) -> Signup:
    """A signup no validation checked (as a store or a future form could hand one over):
    mentions, markdown links, a 10,000-character business name, control characters."""
    fields: dict[str, object] = {
        "email": "x@example.com",
        "first_name": "<!channel> @everyone @here\n**Jane** ||spoiler||",
        "business_name": ("[click](https://evil.example) `x` <https://evil.example|here> " * 200)[
            :10_000
        ],
        "assessment_score": 38,
        "red_systems": 3,
        "weakest_system_1": "<@U123> <@&42>\x00\x1b[31m\u202eevil\u202c",
        "weakest_system_2": "# Heading\r\n- list > quote",
        "revenue_leak_total": -500,
    }
    fields.update(overrides)
    return Signup.model_construct(**fields)  # type: ignore[arg-type]


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys aside."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def controls(text: str) -> list[str]:
    """Control and bidi-override characters (line breaks included)."""
    return [
        c for c in text if unicodedata.category(c) == "Cc" or c in "\u202a\u202b\u202c\u202d\u202e"
    ]


@pytest.mark.parametrize(
    ("url", "flavour"),
    [
        ("https://discord.com/api/webhooks/123/abc-DEF", "discord"),
        ("https://discordapp.com/api/webhooks/123/abc", "discord"),
        ("https://ptb.discord.com/api/webhooks/123/abc?wait=true", "discord"),
        ("https://canary.discord.com/api/v10/webhooks/123/abc", "discord"),
        ("http://127.0.0.1:8123/api/webhooks/1234567890/T0KEN", "discord"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "slack"),
        ("http://127.0.0.1:8123/services/T000/B000/XXXX", "slack"),
        ("https://hooks.slack.com/triggers/T000/123/abc", "json"),  # a workflow's variables
        ("https://example.com/hooks/alerts", "json"),
        ("https://discord.com.evil.example/alerts", "json"),
        ("https://evil.example/?next=hooks.slack.com", "json"),
        ("http://127.0.0.1:8123/api/webhooks/not-an-id/T0KEN", "json"),
        ("not a url at all", "json"),
    ],
)
def test_the_url_says_which_chat(url: str, flavour: ChatFlavour) -> None:
    assert chat_flavour(url) == flavour


def test_discord_gets_an_embed_field_by_field() -> None:
    body = format_critical_alert(critical(), "Christmas 2025", flavour="discord")
    assert set(body) == {"content", "embeds", "allowed_mentions"}
    assert body["allowed_mentions"] == {"parse": []}  # nobody is pinged
    assert body["content"] == f"{SIREN} CRITICAL signup: Jane (Acme Plumbing)"
    [embed] = body["embeds"]  # type: ignore[misc]
    assert embed["title"] == f"{SIREN} CRITICAL signup: Jane (Acme Plumbing)"
    assert type(embed["color"]) is int and embed["color"] == RED
    red, green, blue = RED >> 16, (RED >> 8) & 0xFF, RED & 0xFF
    assert red > 0xC0 and green < 0x60 and blue < 0x60
    assert embed["footer"] == {"text": "Christmas 2025"}
    assert "url" not in embed  # Discord links only http(s); the mailto: link is a field
    assert embed["fields"] == [
        {"name": "Name", "value": "Jane", "inline": True},
        {"name": "Business", "value": "Acme Plumbing", "inline": True},
        {"name": "Email", "value": "Jane\\@example.com", "inline": True},
        {"name": "Score", "value": "38/100", "inline": True},
        {
            "name": "Segment",
            "value": "CRITICAL (3 red, 1 orange, 2 yellow, 2 green)",
            "inline": True,
        },
        {"name": "Monthly revenue leak", "value": "$12,500", "inline": True},
        {"name": "Weakest systems", "value": "Marketing, Sales", "inline": False},
        {"name": "Contact", "value": "mailto\\:Jane\\@example.com", "inline": False},
    ]
    assert discord_refusal(body) is None
    with ChatWebhookServer(flavour="discord") as hook:
        post_alert(hook.url, body)
    assert hook.posts[0].body == body


def test_discord_links_an_http_contact_from_the_title() -> None:
    url = "https://crm.example/contacts/42?tab=notes&x=(1)"
    body = format_critical_alert(critical(), "Christmas 2025", flavour="discord", contact_url=url)
    [embed] = body["embeds"]  # type: ignore[misc]
    encoded = "https://crm.example/contacts/42?tab=notes&x=%281%29"  # `)` would end the link
    assert embed["url"] == encoded
    assert embed["fields"][-1] == {
        "name": "Contact",
        "value": f"[Open the contact]({encoded})",
        "inline": False,
    }
    with ChatWebhookServer(flavour="discord") as hook:
        post_alert(hook.url, body)


def test_slack_gets_block_kit_with_a_text_fallback() -> None:
    body = format_critical_alert(critical(), "Christmas 2025", flavour="slack")
    assert set(body) == {"text", "blocks"}
    assert body["text"] == f"{SIREN} CRITICAL signup: Jane (Acme Plumbing), Christmas 2025"
    header, section, context = body["blocks"]  # type: ignore[misc]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": f"{SIREN} CRITICAL signup: Jane (Acme Plumbing)"},
    }
    assert section["type"] == "section" and set(section) == {"type", "fields"}
    assert all(f["type"] == "mrkdwn" and f["verbatim"] is True for f in section["fields"])
    assert [f["text"] for f in section["fields"]] == [
        "*Name*\nJane",
        "*Business*\nAcme Plumbing",
        "*Email*\nJane@example.com",
        "*Score*\n38/100",
        "*Segment*\nCRITICAL (3 red, 1 orange, 2 yellow, 2 green)",
        "*Monthly revenue leak*\n$12,500",
        "*Weakest systems*\nMarketing, Sales",
    ]
    assert context == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "<mailto:Jane@example.com|Email the contact> \N{MIDDLE DOT} Christmas 2025",
            }
        ],
    }
    assert slack_refusal(body) is None
    with ChatWebhookServer(flavour="slack") as hook:
        post_alert(hook.url, body)
    assert hook.posts[0].body == body


def test_slack_links_an_http_contact_with_its_ampersands_escaped() -> None:
    url = "https://crm.example/contacts/42?tab=notes&view=full"
    body = format_critical_alert(critical(), "Christmas 2025", flavour="slack", contact_url=url)
    [element] = body["blocks"][-1]["elements"]  # type: ignore[index]
    assert element["text"].startswith(
        "<https://crm.example/contacts/42?tab=notes&amp;view=full|Open the contact>"
    )


def test_any_other_webhook_gets_the_facts_as_plain_json() -> None:
    body = format_critical_alert(
        critical(), "Christmas 2025", flavour="json", contact_url="https://crm.example/c/42"
    )
    assert body == {
        "text": "CRITICAL signup: Jane (Acme Plumbing), score 38/100",
        "event": "critical_signup",
        "campaign": "Christmas 2025",
        "name": "Jane",
        "business": "Acme Plumbing",
        "email": "Jane@example.com",
        "score": 38,
        "segment": "CRITICAL",
        "revenue_leak_monthly": 12500,
        "weakest_systems": ["Marketing", "Sales"],
        "contact_url": "https://crm.example/c/42",
    }
    with ChatWebhookServer(flavour="json") as hook:
        post_alert(hook.url, body)
    assert hook.posts[0].body == body


def test_the_default_contact_link_is_a_mailto_with_the_address_encoded() -> None:
    signup = critical(email="o'neil+xmas@example.com")
    body = format_critical_alert(signup, "Christmas 2025", flavour="json")
    assert body["contact_url"] == "mailto:o%27neil+xmas@example.com"
    # A link of another scheme, or too long to show, falls back to it.
    for bad in ("javascript:alert(1)", "https://crm.example/" + "x" * 2000):
        body = format_critical_alert(signup, "Christmas 2025", flavour="json", contact_url=bad)
        assert body["contact_url"] == "mailto:o%27neil+xmas@example.com"


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_missing_optional_fields_and_a_negative_leak_read_cleanly(flavour: Flavour) -> None:
    signup = Signup.model_validate(
        {"email": "a@b.co", "first_name": "Zoë", "assessment_score": 10, "red_systems": 2}
    )
    negative = signup.model_copy(update={"revenue_leak_total": -300})
    body = format_critical_alert(negative, "Christmas 2025", flavour=flavour)
    if flavour == "discord":
        fields = {f["name"]: f["value"] for f in body["embeds"][0]["fields"]}  # type: ignore[index]
        assert fields["Business"] == "-" and fields["Weakest systems"] == "none given"
        assert fields["Monthly revenue leak"] == "none"
        assert body["embeds"][0]["title"] == f"{SIREN} CRITICAL signup: Zoë"  # type: ignore[index]
        assert discord_refusal(body) is None
    elif flavour == "slack":
        texts = [f["text"] for f in body["blocks"][1]["fields"]]  # type: ignore[index]
        assert "*Business*\n-" in texts and "*Weakest systems*\nnone given" in texts
        assert "*Monthly revenue leak*\nnone" in texts
        assert slack_refusal(body) is None
    else:
        assert body["business"] == "" and body["weakest_systems"] == []
        assert body["revenue_leak_monthly"] is None


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_a_valid_signup_at_its_extremes_fits_every_chat(flavour: Flavour) -> None:
    # The form allows an empty first name, a business name of any length, a negative leak.
    signup = critical(first_name="", business_name="B" * 10_000, revenue_leak_total=-1)
    body = format_critical_alert(signup, "Christmas 2025", flavour=flavour)
    with ChatWebhookServer(flavour=flavour) as hook:
        post_alert(hook.url, body)
    if flavour == "discord":
        [embed] = body["embeds"]  # type: ignore[misc]
        assert embed["title"] == f"{SIREN} CRITICAL signup: {'B' * 49}\N{HORIZONTAL ELLIPSIS}"
        assert embed["fields"][0] == {"name": "Name", "value": "-", "inline": True}
    elif flavour == "slack":
        header = body["blocks"][0]["text"]["text"]  # type: ignore[index]
        assert header == f"{SIREN} CRITICAL signup: {'B' * 49}\N{HORIZONTAL ELLIPSIS}"
    else:
        assert body["name"] == "" and len(str(body["business"])) == 100


# Discord markdown a user value may not carry unescaped: emphasis, code, spoilers, quotes,
# masked links, mentions.
_DISCORD_ACTIVE = re.compile(r"(?<!\\)(?:\\\\)*[`*_~|<>\[\]@]")


def test_hostile_input_is_neutralised_for_discord() -> None:
    body = format_critical_alert(hostile(), "Christmas 2025", flavour="discord")
    assert discord_refusal(body) is None
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]  # type: ignore[misc]
    shown = [body["content"], embed["title"], *(f["value"] for f in embed["fields"])]
    for text in shown:
        assert not controls(text), text
        assert not _DISCORD_ACTIVE.search(text), text
        assert "https://" not in text  # escaped `:`, so no autolink either
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert (
        fields["Name"] == "\\<!channel\\> \\@everyone \\@here \\*\\*Jane\\*\\* \\|\\|spoiler\\|\\|"
    )
    assert fields["Weakest systems"].endswith(", \\# Heading - list \\> quote")
    # The 10,000 characters are cut before escaping: an ellipsis, no half an escape.
    business = fields["Business"]
    assert business.endswith("\N{HORIZONTAL ELLIPSIS}") and not business.endswith(
        "\\\N{HORIZONTAL ELLIPSIS}"
    )
    assert len(business) <= DISCORD_FIELD_VALUE and len(embed["title"]) <= DISCORD_TITLE
    total = len(embed["title"]) + len(embed["footer"]["text"])
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= DISCORD_TOTAL
    assert fields["Monthly revenue leak"] == "none"
    with ChatWebhookServer(flavour="discord") as hook:
        post_alert(hook.url, body)


def test_hostile_input_is_neutralised_for_slack() -> None:
    body = format_critical_alert(hostile(), "Christmas 2025", flavour="slack")
    assert slack_refusal(body) is None
    header, section, context = body["blocks"]  # type: ignore[misc]
    values = [f["text"].split("\n", 1)[1] for f in section["fields"]]  # after each label
    for text in [body["text"], *values]:
        assert "<" not in text and ">" not in text, text  # no mention, link or command forms
        assert not re.search(r"@(everyone|here|channel)", text), text
        assert not controls(text), text
    assert values[0] == "&lt;!channel&gt; @\u200beveryone @\u200bhere **Jane** ||spoiler||"
    title = header["text"]["text"]
    assert len(title) <= SLACK_HEADER and not controls(title) and "<!" not in title
    assert all(len(f["text"]) <= SLACK_FIELD_TEXT for f in section["fields"])
    business = section["fields"][1]["text"]
    # Cut before escaping: an ellipsis, never half an `&amp;`.
    assert business.endswith("\N{HORIZONTAL ELLIPSIS}")
    assert not re.search(r"&[a-z]*\N{HORIZONTAL ELLIPSIS}$", business)
    assert "*Monthly revenue leak*\nnone" in [f["text"] for f in section["fields"]]
    # The only link is ours.
    [element] = context["elements"]
    assert element["text"].startswith("<mailto:x@example.com|Email the contact>")
    with ChatWebhookServer(flavour="slack") as hook:
        post_alert(hook.url, body)


def test_hostile_input_is_defused_in_plain_json() -> None:
    body = format_critical_alert(hostile(), "Christmas 2025", flavour="json")
    for text in strings(body):
        assert not controls(text), text
        assert not re.search(r"<[!@#]|@(everyone|here|channel)", text), text
    business = str(body["business"])
    assert len(business) == 100 and business.endswith("\N{HORIZONTAL ELLIPSIS}")
    assert body["revenue_leak_monthly"] is None
    json.dumps(body)  # plain JSON


@pytest.mark.parametrize("flavour", ["discord", "slack"])
def test_an_ops_alert_is_valid_for_both_chats(flavour: Flavour) -> None:
    body = format_ops_alert("A send run failed", ["Job: send_due_emails", "Why: " + "x" * 3000])
    with ChatWebhookServer(flavour=flavour) as hook:
        post_alert(hook.url, body)
    assert hook.posts[0].body == body


def _embed(**overrides: object) -> dict[str, object]:
    embed: dict[str, object] = {"title": "t", "color": RED, "fields": [_field()]}
    embed.update(overrides)
    return embed


def _field(name: str = "n", value: str = "v") -> dict[str, object]:
    return {"name": name, "value": value, "inline": True}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"embeds": [_embed(title="t" * 257)]}, 50035),
        ({"embeds": [_embed(description="d" * 4097)]}, 50035),
        ({"embeds": [_embed(fields=[_field()] * 26)]}, 50035),
        ({"embeds": [_embed(fields=[_field(name="n" * 257)])]}, 50035),
        ({"embeds": [_embed(fields=[_field(value="v" * 1025)])]}, 50035),
        ({"embeds": [_embed(fields=[{"name": "n"}])]}, 50035),  # a field needs a value
        ({"embeds": [_embed(fields=[_field(value="")])]}, 50035),
        ({"embeds": [_embed(fields=[{"name": "n", "value": "v", "inline": "yes"}])]}, 50035),
        ({"embeds": [_embed(footer={"text": "f" * 2049})]}, 50035),
        ({"embeds": [_embed(author={"name": "a" * 257})]}, 50035),
        ({"embeds": [_embed(fields=[_field(value="v" * 1024)] * 6)]}, 50035),  # 6,144 in all
        ({"embeds": [_embed(color="#ff0000")]}, 50035),
        ({"embeds": [_embed(color=True)]}, 50035),
        ({"embeds": [_embed(color=0x1000000)]}, 50035),
        ({"embeds": [_embed(url="mailto:a@b.co")]}, 50035),
        ({"embeds": [_embed()] * 11}, 50035),
        ({"embeds": "not a list"}, 50035),
        ({"content": "c" * 2001}, 50035),
        ({"content": "hi", "allowed_mentions": {"parse": ["nobody"]}}, 50035),
        ({}, 50006),
        ({"content": "   "}, 50006),
        ({"content": "", "embeds": []}, 50006),
    ],
)
def test_the_discord_fake_refuses_what_discord_refuses(body: dict[str, object], code: int) -> None:
    with ChatWebhookServer(flavour="discord") as hook:
        answer = httpx.post(hook.url, json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    with ChatWebhookServer(flavour="discord") as hook, pytest.raises(AlertError, match="400"):
        post_alert(hook.url, body)


def test_discord_errors_say_where_like_discord() -> None:
    refusal = discord_refusal({"embeds": [_embed(fields=[_field(), _field(value="v" * 1025)])]})
    assert refusal is not None
    status, error = refusal
    assert status == 400 and error["message"] == "Invalid Form Body"
    [problem] = error["errors"]["embeds"]["0"]["fields"]["1"]["value"]["_errors"]
    assert problem["code"] == "BASE_TYPE_MAX_LENGTH"


@pytest.mark.parametrize(
    "body",
    [
        {"content": "just text"},
        {"embeds": [_embed()]},
        {"content": "", "embeds": [_embed(fields=[_field(value="v" * 1024)] * 5)]},  # 5,126 in all
        {"embeds": [_embed(url="https://crm.example/c/1", footer={"text": "f"})]},
    ],
)
def test_the_discord_fake_accepts_valid_messages(body: dict[str, object]) -> None:
    with ChatWebhookServer(flavour="discord") as hook:
        answer = httpx.post(hook.url, json=body)
    assert answer.status_code == 204 and answer.content == b""


def _section(**overrides: object) -> dict[str, object]:
    block: dict[str, object] = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}
    block.update(overrides)
    return block


def _text(text: str = "x", kind: str = "mrkdwn") -> dict[str, object]:
    return {"type": kind, "text": text}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"blocks": [{"type": "banner"}]}, "invalid_blocks"),
        (
            {"blocks": [{"type": "header", "text": _text("h" * 151, "plain_text")}]},
            "invalid_blocks",
        ),
        ({"blocks": [{"type": "header", "text": _text("h")}]}, "invalid_blocks"),  # mrkdwn
        ({"blocks": [{"type": "section"}]}, "invalid_blocks"),  # neither text nor fields
        ({"blocks": [_section(text=None, fields=[])]}, "invalid_blocks"),
        ({"blocks": [_section(fields=[_text()] * 11)]}, "invalid_blocks"),
        ({"blocks": [_section(fields=[_text("f" * 2001)])]}, "invalid_blocks"),
        ({"blocks": [_section(text=_text("t" * 3001))]}, "invalid_blocks"),
        ({"blocks": [_section(text={"type": "markdown", "text": "x"})]}, "invalid_blocks"),
        ({"blocks": [_section(text=_text(""))]}, "invalid_blocks"),
        ({"blocks": [_section(text={**_text(), "emoji": True})]}, "invalid_blocks"),
        ({"blocks": [{"type": "context", "elements": [_text()] * 11}]}, "invalid_blocks"),
        ({"blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        (
            {
                "blocks": [
                    {
                        "type": "actions",
                        "elements": [{"type": "button", "text": _text("b" * 76, "plain_text")}],
                    }
                ]
            },
            "invalid_blocks",
        ),
        ({"blocks": "nope"}, "invalid_blocks_format"),
        ({}, "no_text"),
        ({"text": "  "}, "no_text"),
        ({"text": "", "blocks": []}, "no_text"),
        ({"text": 42}, "invalid_payload"),
    ],
)
def test_the_slack_fake_refuses_what_slack_refuses(body: dict[str, object], error: str) -> None:
    with ChatWebhookServer(flavour="slack") as hook:
        answer = httpx.post(hook.url, json=body)
    assert (answer.status_code, answer.text) == (400, error)
    with ChatWebhookServer(flavour="slack") as hook, pytest.raises(AlertError, match=error):
        post_alert(hook.url, body)


@pytest.mark.parametrize(
    "body",
    [
        {"text": "just text"},
        {"blocks": [{"type": "divider"}]},  # Slack takes blocks without a fallback
        {"text": "t", "blocks": [_section(text=None, fields=[_text("f" * 2000)] * 10)]},
        {"text": "t", "blocks": [{"type": "header", "text": _text("h" * 150, "plain_text")}]},
    ],
)
def test_the_slack_fake_accepts_valid_messages(body: dict[str, object]) -> None:
    with ChatWebhookServer(flavour="slack") as hook:
        answer = httpx.post(hook.url, json=body)
    assert (answer.status_code, answer.text) == (200, "ok")


@pytest.mark.parametrize("flavour", ["discord", "slack"])
def test_post_reaches_the_webhook(flavour: Flavour) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        body = format_critical_alert(critical(), "Christmas 2025", flavour=flavour)
        post_alert(hook.url, body)
    (post,) = hook.posts
    assert post.body == body
    assert post.headers["Content-Type"] == "application/json"


def test_post_with_a_given_client() -> None:
    with ChatWebhookServer() as hook, httpx.Client() as client:
        body = format_critical_alert(critical(), "Christmas 2025", flavour="discord")
        post_alert(hook.url, body, client=client)
        assert not client.is_closed  # the caller's client stays the caller's
    assert len(hook.posts) == 1


@pytest.mark.parametrize(
    ("flavour", "fail_with", "expected"),
    [
        ("discord", 429, "answered 429, retry after 2s"),
        ("discord", 500, "answered 500"),
        ("slack", 503, "answered 503"),
    ],
)
def test_non_2xx_raises_without_the_url(flavour: Flavour, fail_with: int, expected: str) -> None:
    hook = ChatWebhookServer(flavour=flavour, fail_with=fail_with)
    with hook, pytest.raises(AlertError) as caught:
        post_alert(hook.url, format_critical_alert(critical(), "Christmas 2025", flavour=flavour))
    assert expected in str(caught.value)
    assert hook.token not in str(caught.value)


@pytest.mark.parametrize("flavour", ["discord", "slack"])
def test_unknown_webhook_and_empty_message_are_errors(flavour: Flavour) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        with pytest.raises(AlertError, match="answered 404"):
            post_alert(hook.url.replace(hook.token, "revoked-token"), {"content": "x", "text": "x"})
        with pytest.raises(AlertError, match="answered 400"):
            post_alert(hook.url, {"content": "", "text": ""})


def test_body_echoing_the_request_path_is_redacted() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request to {request.url.path}")

    url = "https://discord.example/api/webhooks/1/sup3r-s3cret"
    client = httpx.Client(transport=httpx.MockTransport(echo))
    with client, pytest.raises(AlertError) as caught:
        post_alert(url, {"content": "x"}, client=client)
    assert "sup3r-s3cret" not in str(caught.value)
    assert "[webhook]" in str(caught.value)


def test_unreachable_webhook_error_hides_the_url() -> None:
    with ChatWebhookServer() as hook:
        url = hook.url
    # The server is gone: the connection is refused.
    with pytest.raises(AlertError, match="unreachable") as caught:
        post_alert(url, {"content": "x"}, timeout=2)
    assert "T0KEN" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_non_http_url_is_refused() -> None:
    with pytest.raises(AlertError, match="http"):
        post_alert("file:///etc/passwd", {"content": "x"})
