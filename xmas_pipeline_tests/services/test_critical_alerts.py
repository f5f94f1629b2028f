"""CRITICAL signups are announced to the alert webhook once each, in the shape of the chat
the webhook belongs to: by the service on its own, and by the pipeline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.services.critical_alerts import critical_key, send_critical_alerts
from xmas_pipeline_tests.fakes.chat_webhook import (
    ChatWebhookServer,
    Flavour,
    discord_refusal,
    slack_refusal,
)
from xmas_pipeline_tests.support.pipeline_env import make_env, materializations, signup, today


class MemoryLedger:
    """`core.ports.AlertLedger` in a set."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def seen(self, key: str) -> bool:
        return key in self.keys

    def mark(self, key: str) -> None:
        self.keys.add(key)


def event(email: str, red: int = 2) -> SignupEvent:
    payload = {"email": email, "first_name": email.split("@")[0].title(), "red_systems": red}
    return SignupEvent(
        signup=Signup.model_validate({**payload, "assessment_score": 30}),
        received_at=datetime(2025, 12, 1, tzinfo=UTC),
        source=f"{email}.json",
    )


EVENTS = [event("ann@x.com"), event("bob@x.com", red=3), event("urgent@x.com", red=1)]


def shaped_for(flavour: Flavour, body: dict[str, object]) -> bool:
    if flavour == "discord":
        return "embeds" in body and discord_refusal(body) is None
    if flavour == "slack":
        return "blocks" in body and slack_refusal(body) is None
    return body.get("event") == "critical_signup"


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_once_per_critical_signup_in_the_chat_s_shape(flavour: Flavour) -> None:
    ledger = MemoryLedger()
    with ChatWebhookServer(flavour=flavour) as hook:
        first = send_critical_alerts(
            [*EVENTS, EVENTS[0]], campaign_name="Christmas 2025", url=hook.url, ledger=ledger
        )
        again = send_critical_alerts(
            EVENTS, campaign_name="Christmas 2025", url=hook.url, ledger=ledger
        )
    assert first.sent == ["ann@x.com", "bob@x.com"] and first.already == ["ann@x.com"]
    assert not first.failed
    assert again.sent == [] and again.already == ["ann@x.com", "bob@x.com"]
    assert ledger.keys == {critical_key("ann@x.com"), critical_key("bob@x.com")}
    assert len(hook.posts) == 2  # the URGENT signup and the repeats are not announced
    assert all(shaped_for(flavour, post.body) for post in hook.posts)


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_a_failed_alert_is_retried_next_time(flavour: Flavour) -> None:
    ledger = MemoryLedger()
    hook = ChatWebhookServer(flavour=flavour, fail_with=500)
    with hook:
        failed = send_critical_alerts(
            EVENTS, campaign_name="Christmas 2025", url=hook.url, ledger=ledger
        )
        hook.fail_with = None
        retried = send_critical_alerts(
            EVENTS, campaign_name="Christmas 2025", url=hook.url, ledger=ledger
        )
    assert [key for key, _ in failed.failed] == ["ann@x.com", "bob@x.com"]
    assert all("answered 500" in reason and hook.token not in reason for _, reason in failed.failed)
    assert failed.sent == [] and retried.sent == ["ann@x.com", "bob@x.com"]
    assert all(shaped_for(flavour, post.body) for post in hook.posts[-2:])


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_the_contact_link_is_the_caller_s(flavour: Flavour) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        send_critical_alerts(
            [EVENTS[0]],
            campaign_name="Christmas 2025",
            url=hook.url,
            ledger=MemoryLedger(),
            contact_url=lambda s: f"https://crm.example/contacts/{s.contact_key}",
        )
    [post] = hook.posts
    link = "https://crm.example/contacts/ann@x.com"
    if flavour == "discord":
        assert post.body["embeds"][0]["url"] == link
    elif flavour == "slack":
        assert f"<{link}|Open the contact>" in post.body["blocks"][-1]["elements"][0]["text"]
    else:
        assert post.body["contact_url"] == link


def test_the_default_contact_link_is_a_mailto() -> None:
    with ChatWebhookServer(flavour="json") as hook:
        send_critical_alerts(
            [EVENTS[1]], campaign_name="Christmas 2025", url=hook.url, ledger=MemoryLedger()
        )
    assert hook.posts[0].body["contact_url"] == "mailto:bob@x.com"


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_next = 0


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.fail_next:
                state.fail_next -= 1
                self.send_response(500)
                self.end_headers()
                return
            state.bodies.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_port}/api/webhooks/123/secret-token"
    server.shutdown()
    server.server_close()


def test_each_critical_signup_is_announced_once(tmp_path: Path, hook: tuple[Hook, str]) -> None:
    state, url = hook
    env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=url)
    env.drop_signup(signup("crit1@x.com", red=2, first_name="Ann"))
    env.drop_signup(signup("crit2@x.com", red=3, first_name="Bob"))
    env.drop_signup(signup("urgent@x.com", red=1))
    with dg.instance_for_test() as instance:
        state.fail_next = 1  # the first alert fails: reported, and retried next time
        first = env.ingest(today(), instance)
        meta = materializations(first, "email_sequences")[0]
        assert meta["critical alerts sent"] == 1 and meta["critical alerts failed"] == 1
        second = env.ingest(today(), instance)
        meta = materializations(second, "email_sequences")[0]
        assert meta["critical alerts sent"] == 1 and meta["critical alerts failed"] == 0
        third = env.ingest(today(), instance)
        assert materializations(third, "email_sequences")[0]["critical alerts sent"] == 0
    # The URL has a Discord webhook's path: each alert is an embed Discord accepts.
    assert len(state.bodies) == 2
    assert all(discord_refusal(body) is None for body in state.bodies)
    names = sorted(body["embeds"][0]["fields"][0]["value"] for body in state.bodies)
    assert names == ["Ann", "Bob"]
    assert all(body["allowed_mentions"] == {"parse": []} for body in state.bodies)


def test_alert_url_never_reaches_metadata_or_logs(tmp_path: Path, hook: tuple[Hook, str]) -> None:
    state, url = hook
    env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=url)
    env.drop_signup(signup("crit@x.com", red=2))
    state.fail_next = 1
    with dg.instance_for_test() as instance:
        result = env.ingest(today(), instance)
        logs = [e.message or "" for e in instance.all_logs(result.run_id)]
    everything = json.dumps(
        [str(m) for m in materializations(result, "email_sequences")]
    ) + "".join(logs)
    assert "secret-token" not in everything
