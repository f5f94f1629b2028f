"""The reputation guard on the SQL store (SQLite and PostgreSQL): what it counts, its
episodes (one alert each), a resume starting a fresh count, and a pause that does not
wait for the alert."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from xmas_pipeline.adapters.sql.alerts import SqlAlertOutbox
from xmas_pipeline.adapters.sql.reputation import SqlReputation
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import DeliveryEvent
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline.core.reputation import ReputationLimits
from xmas_pipeline.services.alert_delivery import deliver_alerts
from xmas_pipeline.services.reputation_guard import GuardOutcome, guard, outbox_alerter
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer

LIMITS = ReputationLimits(min_sent=20)


@pytest.fixture
def hook() -> Iterator[ChatWebhookServer]:
    with ChatWebhookServer(flavour="slack") as server:
        yield server


def sent(store: SqlStore, campaign: Campaign, n: int, at: datetime, tag: str = "a") -> list[str]:
    ids = []
    for i in range(n):
        provider_id = f"re_{tag}{i}"
        store.record_sent(
            campaign,
            SentRecord(
                message_id=f"{tag}{i}|email-1",
                idempotency_key=f"key-{tag}{i}",
                contact_key=f"{tag}{i}@example.com",
                kind="nurture",
                step_id="email-1",
                step_number=1,
                due_at=at,
                sent_at=at,
                provider_id=provider_id,
            ),
        )
        ids.append(provider_id)
    return ids


def bad(store: SqlStore, campaign: Campaign, kind: str, ids: list[str]) -> None:
    for provider_id in ids:
        store.record_delivery_event(
            campaign,
            DeliveryEvent(
                kind=kind,  # type: ignore[arg-type]
                contact_key=f"{provider_id}@example.com",
                email=f"{provider_id}@example.com",
                provider_id=provider_id,
                at=datetime.now(UTC),
            ),
        )


def run_guard(store: SqlStore, campaign: Campaign, url: str) -> GuardOutcome:
    return guard(
        SqlReputation(store.url, engine=store.engine),
        SqlSendSwitch(store.url, engine=store.engine),
        SqlAlertOutbox(store.url, campaign, engine=store.engine),
        campaign,
        LIMITS,
        datetime.now(UTC),
        outbox_alerter(url),
    )


def test_only_mail_sent_in_the_window_counts(sql_store: SqlStore, campaign: Campaign) -> None:
    now = datetime.now(UTC)
    old = sent(sql_store, campaign, 30, now - timedelta(days=8), "old")
    new = sent(sql_store, campaign, 40, now - timedelta(hours=1), "new")
    bad(sql_store, campaign, "bounced", old[:20] + new[:3])
    bad(sql_store, campaign, "complained", new[3:4])
    bad(sql_store, campaign, "soft_bounced", new[4:10])  # transient: not counted
    source = SqlReputation(sql_store.url, engine=sql_store.engine)
    since = now - timedelta(days=7)
    assert len(source.sent_since(campaign, since)) == 40
    events = source.bad_events_since(campaign, since)
    assert sorted(events["kind"]) == ["bounced"] * 3 + ["complained"]


def test_an_episode_alerts_once_and_a_new_episode_alerts_again(
    sql_store: SqlStore, campaign: Campaign, hook: ChatWebhookServer
) -> None:
    now = datetime.now(UTC)
    ids = sent(sql_store, campaign, 50, now - timedelta(hours=1))
    bad(sql_store, campaign, "bounced", ids[:2])  # 4%: warn
    first = run_guard(sql_store, campaign, hook.url)
    assert first.reputation.level == "warn" and first.alerted_now
    assert not run_guard(sql_store, campaign, hook.url).alerted_now
    # More mail goes out clean: back within limits, the episode ends.
    sent(sql_store, campaign, 50, now - timedelta(minutes=30), "b")
    assert run_guard(sql_store, campaign, hook.url).reputation.level == "ok"
    # Bounces again: a new episode, told again.
    more = [f"re_b{i}" for i in range(4)]
    bad(sql_store, campaign, "bounced", more)  # 6 of 100
    again = run_guard(sql_store, campaign, hook.url)
    assert again.reputation.level == "warn" and again.alerted_now
    assert len(hook.posts) == 2
    assert not SqlSendSwitch(sql_store.url, engine=sql_store.engine).state(campaign).paused


def test_the_pause_holds_when_the_alert_fails_and_the_alert_goes_later(
    sql_store: SqlStore, campaign: Campaign, hook: ChatWebhookServer
) -> None:
    ids = sent(sql_store, campaign, 25, datetime.now(UTC) - timedelta(hours=1))
    bad(sql_store, campaign, "bounced", ids[:5])
    hook.fail_with = 500
    first = run_guard(sql_store, campaign, hook.url)
    assert first.paused_now and not first.alerted_now
    switch = SqlSendSwitch(sql_store.url, engine=sql_store.engine)
    assert switch.state(campaign).paused  # paused whatever became of the alert
    outbox = SqlAlertOutbox(sql_store.url, campaign, engine=sql_store.engine)
    assert outbox.waiting() == 1  # the alert waits in the outbox for the chat
    hook.fail_with = None
    # The outbox's next delivery (alert_outbox_sensor) posts it, once.
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert deliver_alerts(outbox, hook.url, now=lambda: later).sent == [first.alert_key]
    assert run_guard(sql_store, campaign, hook.url).alerted_now is False
    assert len(hook.accepted) == 1


def test_after_a_resume_the_count_starts_again(
    sql_store: SqlStore, campaign: Campaign, hook: ChatWebhookServer
) -> None:
    ids = sent(sql_store, campaign, 25, datetime.now(UTC) - timedelta(hours=1))
    bad(sql_store, campaign, "bounced", ids[:5])
    assert run_guard(sql_store, campaign, hook.url).paused_now
    switch = SqlSendSwitch(sql_store.url, engine=sql_store.engine)
    switch.set(campaign, paused=False, reason="", by="run 1234abcd")
    resumed = run_guard(sql_store, campaign, hook.url)
    assert resumed.reputation.level == "too_few" and resumed.reputation.counts.sent == 0
    # The cause was not fixed: the new mail bounces as much, and the guard pauses again,
    # telling ops again (a resume opens a new era of episodes).
    new = sent(sql_store, campaign, 25, datetime.now(UTC), "after")
    bad(sql_store, campaign, "bounced", new[:5])
    again = run_guard(sql_store, campaign, hook.url)
    assert again.paused_now and again.alerted_now
    assert switch.state(campaign).by == "reputation guard"
    assert len(hook.posts) == 2


def test_each_campaign_is_judged_on_its_own_mail_switch_and_outbox(
    sql_store: SqlStore, campaign: Campaign, hook: ChatWebhookServer
) -> None:
    """Two campaigns on one store: a storm in one pauses it alone and alerts in its own
    outbox, under the same key the other campaign's episode would use, without either
    hiding the other's."""
    other = campaign.model_copy(update={"slug": "christmas-2026", "name": "Christmas 2026"})
    at = datetime.now(UTC) - timedelta(hours=1)
    calm = sent(sql_store, campaign, 25, at, "calm")
    stormy = sent(sql_store, other, 25, at, "storm")
    bad(sql_store, other, "bounced", stormy[:5])  # 20% of its own mail
    first = run_guard(sql_store, campaign, hook.url)
    second = run_guard(sql_store, other, hook.url)
    assert first.reputation.level == "ok" and first.reputation.counts.sent == 25
    assert second.reputation.level == "pause" and second.reputation.counts.bounced == 5
    assert second.paused_now and second.alerted_now
    switch = SqlSendSwitch(sql_store.url, engine=sql_store.engine)
    assert switch.state(other).paused and not switch.state(campaign).paused
    [post] = hook.accepted
    text = str(post.body)
    assert "Christmas 2026" in text and "christmas_2026__resume_sending" in text
    # The first campaign's storm later: its own episode and alert, the same key, no clash.
    bad(sql_store, campaign, "bounced", calm[:5])
    later = run_guard(sql_store, campaign, hook.url)
    assert later.paused_now and later.alerted_now
    assert later.alert_key == second.alert_key == "reputation:start:0:pause"
    assert switch.state(campaign).paused
    assert len(hook.accepted) == 2
    for camp in (campaign, other):
        outbox = SqlAlertOutbox(sql_store.url, camp, engine=sql_store.engine)
        assert [row["alert_key"] for row in outbox.history()] == ["reputation:start:0:pause"]
