"""CRITICAL signups are announced to the alert webhook once each, in the shape of the chat
the webhook belongs to, through the alert outbox: by the service on its own, and by the
pipeline, whose outbox sensor posts what the chat refused when the signup came."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from xmas_pipeline.adapters.sql.alerts import SqlAlertOutbox
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.services.alert_delivery import deliver_alerts
from xmas_pipeline.services.critical_alerts import critical_key, send_critical_alerts
from xmas_pipeline_tests.fakes.chat_webhook import (
    ChatWebhookServer,
    Flavour,
    discord_refusal,
    slack_refusal,
)
from xmas_pipeline_tests.support.clock import MovableClock
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import make_env, materializations, signup, today
from xmas_pipeline_tests.support.sensor_ticks import Ticker


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqlAlertOutbox]:
    """The alert outbox on a fresh SQLite store."""
    box = SqlAlertOutbox(f"sqlite:///{tmp_path / 'alerts.db'}", load_campaign())
    yield box
    box.dispose()


def later(seconds: float) -> Callable[[], datetime]:
    """A clock `seconds` ahead: past the backoff of a failed alert, without waiting."""
    return lambda: datetime.now(UTC) + timedelta(seconds=seconds)


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
def test_once_per_critical_signup_in_the_chat_s_shape(
    flavour: Flavour, outbox: SqlAlertOutbox
) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        first = send_critical_alerts(
            [*EVENTS, EVENTS[0]], campaign_name="Christmas 2025", url=hook.url, outbox=outbox
        )
        again = send_critical_alerts(
            EVENTS, campaign_name="Christmas 2025", url=hook.url, outbox=outbox
        )
    assert first.sent == ["ann@x.com", "bob@x.com"] and not first.waiting
    assert again.sent == [] and again.already == ["ann@x.com", "bob@x.com"]
    keys = {critical_key("ann@x.com"), critical_key("bob@x.com")}
    assert outbox.known([*keys, critical_key("urgent@x.com")]) == keys
    assert outbox.waiting() == 0
    assert len(hook.posts) == 2  # the URGENT signup and the repeats are not announced
    assert all(shaped_for(flavour, post.body) for post in hook.posts)


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_a_failed_alert_waits_in_the_outbox_and_goes_once_the_chat_is_back(
    flavour: Flavour, outbox: SqlAlertOutbox
) -> None:
    hook = ChatWebhookServer(flavour=flavour, fail_with=500)
    with hook:
        failed = send_critical_alerts(
            EVENTS, campaign_name="Christmas 2025", url=hook.url, outbox=outbox
        )
        assert len(hook.posts) == 1  # the chat is down: the pass stops at its first 500
        hook.fail_with = None
        early = deliver_alerts(outbox, hook.url)
        retried = deliver_alerts(outbox, hook.url, now=later(3))
        again = deliver_alerts(outbox, hook.url, now=later(600))
    assert failed.sent == [] and [k for k, _ in failed.waiting] == ["ann@x.com", "bob@x.com"]
    reason = failed.waiting[0][1]
    assert "answered 500" in reason and hook.token not in reason
    assert early.sent == [critical_key("bob@x.com")]  # never tried yet; Ann waits 2 s
    assert retried.sent == [critical_key("ann@x.com")] and again.sent == []
    assert [post.status for post in hook.posts][0] == 500 and len(hook.accepted) == 2
    assert all(shaped_for(flavour, post.body) for post in hook.accepted)


@pytest.mark.parametrize("flavour", ["discord", "slack", "json"])
def test_the_contact_link_is_the_caller_s(flavour: Flavour, outbox: SqlAlertOutbox) -> None:
    with ChatWebhookServer(flavour=flavour) as hook:
        send_critical_alerts(
            [EVENTS[0]],
            campaign_name="Christmas 2025",
            url=hook.url,
            outbox=outbox,
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


def test_the_default_contact_link_is_a_mailto(outbox: SqlAlertOutbox) -> None:
    with ChatWebhookServer(flavour="json") as hook:
        send_critical_alerts(
            [EVENTS[1]], campaign_name="Christmas 2025", url=hook.url, outbox=outbox
        )
    assert hook.posts[0].body["contact_url"] == "mailto:bob@x.com"


def test_an_alert_waiting_for_a_chat_of_another_kind_takes_its_shape(
    outbox: SqlAlertOutbox,
) -> None:
    """The alert is shaped when it is posted: a webhook URL changed meanwhile (Discord to
    Slack) gets a body it accepts."""
    with ChatWebhookServer(flavour="discord", fail_with=503) as discord:
        send_critical_alerts(
            [EVENTS[0]], campaign_name="Christmas 2025", url=discord.url, outbox=outbox
        )
    with ChatWebhookServer(flavour="slack") as slack:
        report = deliver_alerts(outbox, slack.url, now=later(3))
    assert report.sent == [critical_key("ann@x.com")]
    [post] = slack.accepted
    assert "blocks" in post.body and slack_refusal(post.body) is None


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


def test_a_critical_signup_is_announced_once_though_no_other_signup_follows(
    tmp_path: Path, hook: tuple[Hook, str], clock: MovableClock
) -> None:
    """The chat fails when the day's signups are ingested: nothing else arrives that day,
    and the alerts still go, each once, from the outbox."""
    state, url = hook
    env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=url)
    env.drop_signup(signup("crit1@x.com", red=2, first_name="Ann"))
    env.drop_signup(signup("crit2@x.com", red=3, first_name="Bob"))
    env.drop_signup(signup("urgent@x.com", red=1))
    with in_memory_instance() as instance:
        state.fail_next = 1  # the chat answers 500: the run leaves both to the outbox
        first = env.ingest(today(), instance)
        meta = materializations(first, "email_sequences")[0]
        assert meta["critical alerts sent"] == 0 and meta["critical alerts waiting"] == 2
        outbox = Ticker.of(env, instance, "alert_outbox_sensor")
        outbox()  # the one never tried goes; the one refused waits out its backoff
        assert len(state.bodies) == 1
        clock.advance(2.2)
        outbox()
        outbox()
        again = env.ingest(today(), instance)  # a re-ingested day announces nobody twice
        meta = materializations(again, "email_sequences")[0]
        assert meta["critical alerts sent"] == 0 and meta["critical alerts waiting"] == 0
        outbox()
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
    with in_memory_instance() as instance:
        result = env.ingest(today(), instance)
        logs = [e.message or "" for e in instance.all_logs(result.run_id)]
    everything = json.dumps(
        [str(m) for m in materializations(result, "email_sequences")]
    ) + "".join(logs)
    assert "secret-token" not in everything
