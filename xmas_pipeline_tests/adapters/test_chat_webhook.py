"""CRITICAL-signup alerts: the message body and its delivery to Discord / Slack webhooks."""

from __future__ import annotations

import httpx
import pytest

from xmas_pipeline.adapters.chat_webhook import AlertError, format_critical_alert, post_alert
from xmas_pipeline.core.signup import Signup
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer, Flavour


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


def test_body_suits_both_discord_and_slack() -> None:
    body = format_critical_alert(critical(), "Christmas 2025")
    assert body["content"] == body["text"]
    text = str(body["text"])
    assert "CRITICAL" in text and "Christmas 2025" in text
    for fact in ("`Jane`", "`Acme Plumbing`", "Jane@example.com", "38/100", "red systems 3"):
        assert fact in text
    assert "`Marketing`, `Sales`" in text
    assert "$12,500" in text
    assert body["allowed_mentions"] == {"parse": []}


def test_hostile_names_cannot_mention_link_or_break_out() -> None:
    signup = critical(
        first_name="<!channel> @everyone",
        business_name="`x` [click](https://evil.example) <https://evil.example|here>",
        weakest_system_1="<@U123>",
    )
    text = str(format_critical_alert(signup, "Christmas 2025")["text"])
    assert "<" not in text and ">" not in text
    # Every user value sits inside exactly one code span: backticks are balanced pairs.
    assert text.count("`") % 2 == 0
    assert "`!channel @everyone`" in text
    assert "`x [click](https://evil.example) https://evil.example|here`" in text


def test_missing_optional_fields_read_cleanly() -> None:
    signup = Signup.model_validate(
        {"email": "a@b.co", "first_name": "Zoë", "assessment_score": 10, "red_systems": 2}
    )
    text = str(format_critical_alert(signup, "Christmas 2025")["text"])
    assert "`Zoë` at -" in text
    assert "Weakest: -" in text


@pytest.mark.parametrize("flavour", ["discord", "slack"])
def test_post_reaches_the_webhook(flavour: Flavour) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        body = format_critical_alert(critical(), "Christmas 2025")
        post_alert(hook.url, body)
    (post,) = hook.posts
    assert post.body == body
    assert post.headers["Content-Type"] == "application/json"


def test_post_with_a_given_client() -> None:
    with ChatWebhookServer() as hook, httpx.Client() as client:
        post_alert(hook.url, format_critical_alert(critical(), "Christmas 2025"), client=client)
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
        post_alert(hook.url, format_critical_alert(critical(), "Christmas 2025"))
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
