"""Two campaigns in one `xmas-pipeline dev`, for real: one server for the whole module
(testing mode, a send every minute) on a copy of the shipped campaigns folder with
christmas-2026's testing `min_gap` raised to 2 minutes, a folder that does not load
(bad YAML) and a campaign whose signups closed (a copy of christmas-2026). Everyone's
signups go over HTTP to the intake the server runs, at the start, each scenario with its
own people; the tests then only wait (with deadlines, polling) for what each shows:

1. each signup gets its own campaign's welcome;
2. someone in both campaigns gets both welcomes at once, and later nurture emails keep
   the longer of the two gaps (the welcome is exempt);
3. an unsubscribe from one campaign's email stops the other campaign's emails too;
4. a booking by someone in both campaigns gets one set of reminders and stops both
   nurtures from email 2 on;
5. the closed campaign answers 202 `enrolled: false` and sends nothing;
6. the broken folder's signup address answers 503 and the others keep sending;
7. pausing one campaign holds only that campaign's emails.

Tests run in file order and share the server: the time-critical actions (the unsubscribe
right after the welcomes) come first, the pauses (which stop a whole campaign) last.
"""

from __future__ import annotations

import email
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.dagster_defs.names import campaign_name
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.dagster_dev import DevServer, running_dev, wait_for
from xmas_pipeline_tests.support.pipeline_env import signup

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "xmas_pipeline" / "campaigns"
C25, C26 = "christmas-2025", "christmas-2026"
CLOSED, BROKEN = "closed-2026", "broken-2027"
GAP = timedelta(minutes=2)  # christmas-2026's testing min_gap here; christmas-2025's is 0
# How long after the test saw the unsubscribe ingested an email may still have been
# written: a send run that had passed its gate just before then.
SLACK = timedelta(seconds=20)

SOLO_25, SOLO_26 = "ann.solo25@x.com", "bob.solo26@x.com"
BOTH = "gail.both@x.com"  # scenario 2
UNSUB = "uma.unsub@x.com"  # scenario 3
BOOKED = "ben.booked@x.com"  # scenario 4
CLOSED_PERSON = "cal.closed@x.com"  # scenario 5
BROKEN_PERSON = "dee.broken@x.com"  # scenario 6
IN_BOTH = (BOTH, UNSUB, BOOKED)


def write_campaigns(folder: Path) -> None:
    """The shipped campaigns, christmas-2026 with a 2-minute testing gap, a closed copy of
    it, and a folder whose campaign file is not YAML."""
    shutil.copytree(SHIPPED, folder)
    file26 = folder / C26 / "campaign.yaml"
    text = file26.read_text()
    assert "\n  min_gap: 0s\n" in text  # the testing preset's gap, indented under it
    file26.write_text(text.replace("\n  min_gap: 0s\n", "\n  min_gap: 2m\n"))

    shutil.copytree(folder / C26, folder / CLOSED)
    closed = folder / CLOSED / "campaign.yaml"
    text = closed.read_text()
    for old, new in (
        ('name: "Christmas 2026"', 'name: "Closed 2026"'),
        (f"slug: {C26}", f"slug: {CLOSED}"),
        ('notion_select: "Christmas 2026"', 'notion_select: "Closed 2026"'),
        ('"Christmas 2026 Campaign Status"', '"Closed 2026 Campaign Status"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    closed.write_text(text + 'signups_close: "2026-11-15"\n')  # past, after start_date

    (folder / BROKEN).mkdir()
    (folder / BROKEN / "campaign.yaml").write_text("name: [Broken 2027\nslug: broken-2027\n")


@dataclass
class World:
    dev: DevServer
    campaigns: dict[str, Campaign]  # as the server runs them (testing mode)
    answers: dict[tuple[str, str], httpx.Response]  # (slug, person) -> the signup's answer
    booking_start: datetime

    @property
    def outbox(self) -> Path:
        return self.dev.home / "outbox"

    def sent(self) -> set[tuple[str, str, str]]:
        """(campaign slug, person, step) of every email in the outbox."""
        found = set()
        if self.outbox.exists():
            for path in self.outbox.glob("*.eml"):
                slug, person, step = path.name.removesuffix(".eml").split("__")[:3]
                found.add((slug, person, step))
        return found

    def steps_of(self, person: str) -> set[tuple[str, str]]:
        return {(slug, step) for slug, who, step in self.sent() if who == person}

    def eml(self, slug: str, person: str, step: str) -> email.message.EmailMessage:
        path = self.outbox / f"{slug}__{person}__{step}.eml"
        return email.message_from_bytes(path.read_bytes(), policy=policy.default)

    def received(self, person: str) -> list[tuple[datetime, str, str]]:
        """(when, campaign slug, step) of every email `person` got, in order. When is the
        outbox file's time: the moment the person got it, whatever the store recorded."""
        found = []
        for path in self.outbox.glob(f"*__{person}__*.eml"):
            slug, _, step = path.name.removesuffix(".eml").split("__")[:3]
            found.append((datetime.fromtimestamp(path.stat().st_mtime, UTC), slug, step))
        return sorted(found)

    def job_successes_since(self, job: str, since: float) -> int:
        """How many runs of `job` that started after the epoch time `since` succeeded."""
        query = """query($filter: RunsFilter) { runsOrError(filter: $filter) {
            ... on Runs { results { startTime } } } }"""
        variables = {"filter": {"pipelineName": job, "statuses": ["SUCCESS"]}}
        runs = self.dev.graphql(query, variables)["runsOrError"].get("results", [])
        return sum(1 for run in runs if (run["startTime"] or 0) > since)

    def post_signup(self, slug: str, person: str) -> httpx.Response:
        url = f"{self.dev.intake_url}/webhook/campaigns/{slug}/signup"
        answer = httpx.post(url, json=signup(person, red=2), timeout=30)
        self.answers[(slug, person)] = answer
        return answer

    def wait(self, what: Any, timeout: float, message: str) -> None:
        assert wait_for(what, timeout=timeout, interval=2), (
            f"{message}\nsent: {sorted(self.sent())}\nruns: {self.dev.runs()}\n"
            f"{self.dev.log_tail()}"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("two_campaigns")
    folder = root / "campaigns"
    write_campaigns(folder)
    # Fail fast, before a server starts, if the edited files do not load as meant.
    campaigns = {
        slug: load_campaign(folder / slug / "campaign.yaml", testing_mode=True)
        for slug in (C25, C26, CLOSED)
    }
    assert campaigns[C26].min_gap == GAP and campaigns[C25].min_gap == timedelta(0)
    assert campaigns[CLOSED].slug == CLOSED and campaigns[CLOSED].signups_close is not None
    started = time.monotonic()
    with running_dev(
        root / "home", XMAS_TESTING_MODE="true", XMAS_CAMPAIGNS_DIR=str(folder)
    ) as dev:
        print(f"\nserver up in {time.monotonic() - started:.0f}s")
        # The meeting is 6.5 minutes away: reminder-1 (6 min before) due in 30 s,
        # reminder-2 (3 min before) in 3.5 minutes; made now, it has every reminder.
        now = datetime.now(UTC).replace(microsecond=0)
        world = World(dev, campaigns, {}, now + timedelta(minutes=6, seconds=30))
        for person in (SOLO_25, *IN_BOTH):
            world.post_signup(C25, person)
        for person in (SOLO_26, *IN_BOTH):
            world.post_signup(C26, person)
        world.post_signup(CLOSED, CLOSED_PERSON)
        world.post_signup(BROKEN, BROKEN_PERSON)
        # Booked through a christmas-2026 email's link (`metadata.campaign`). Posted with
        # the signups: its nurture email 2 cannot be due before 2 minutes (the gap after
        # the other campaign's welcome), ample time to ingest the booking.
        booking = webhook_created(
            "bkTwo1", world.booking_start, at=now, email=BOOKED, name="Ben Booked"
        )
        booking["payload"]["metadata"]["campaign"] = C26
        answer = httpx.post(f"{dev.intake_url}/webhook/calcom-booking", json=booking, timeout=30)
        assert answer.status_code == 200, answer.text
        yield world
        print(f"module ran {time.monotonic() - started:.0f}s with the server up")


def nurture(steps: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(slug, step) for slug, step in steps if step.startswith("email-") and step != "email-1"}


def test_each_signup_gets_its_own_campaigns_welcome(world: World) -> None:
    for slug, person in [(C25, SOLO_25), (C26, SOLO_26)] + [
        (s, p) for p in IN_BOTH for s in (C25, C26)
    ]:
        assert world.answers[(slug, person)].status_code == 202, world.answers[(slug, person)]
    wanted = {(C25, SOLO_25, "email-1"), (C26, SOLO_26, "email-1")} | {
        (slug, person, "email-1") for person in IN_BOTH for slug in (C25, C26)
    }
    world.wait(lambda: wanted <= world.sent(), 300, "welcomes missing")
    # Each person only hears from the campaign they signed up to.
    assert {slug for slug, _ in world.steps_of(SOLO_25)} == {C25}
    assert {slug for slug, _ in world.steps_of(SOLO_26)} == {C26}
    welcome = world.eml(C26, SOLO_26, "email-1")
    assert welcome["X-Tag-Campaign"] == C26 and welcome["X-Tag-Step"] == "email-1"
    # In both campaigns: both welcomes, without waiting the gap between them.
    for person in IN_BOTH:
        got = world.received(person)
        welcomes = sorted((when, slug) for when, slug, step in got if step == "email-1")
        assert sorted(slug for _, slug in welcomes) == [C25, C26], got
        assert welcomes[1][0] - welcomes[0][0] < GAP, got


def test_unsubscribing_from_one_campaign_stops_the_other(world: World) -> None:
    wanted = {(C25, "email-1"), (C26, "email-1")}
    world.wait(lambda: wanted <= world.steps_of(UNSUB), 300, "welcomes missing")
    header = str(world.eml(C25, UNSUB, "email-1")["List-Unsubscribe"]).strip("<>")
    link = urlsplit(header)
    assert link.path == "/unsubscribe" and link.query.startswith("token=")
    # The mail client's one-click POST (RFC 8058), to the intake this server runs.
    answer = httpx.post(
        f"{world.dev.intake_url}/unsubscribe?{link.query}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    posted = time.time()
    ingested = lambda: world.job_successes_since("ingest_email_events", posted)  # noqa: E731
    world.wait(ingested, 240, "unsubscribe not ingested")
    stored_at = datetime.now(UTC)
    # Someone who signed up at the same moment gets email 2 of both campaigns: the sends
    # went on, and none went to the unsubscribed person.
    both = {(C25, "email-2"), (C26, "email-2")}
    world.wait(lambda: both <= world.steps_of(BOTH), 480, "the control got no email 2")
    got = world.received(UNSUB)
    assert [when for when, _, _ in got if when > stored_at + SLACK] == [], got
    assert {(slug, step) for _, slug, step in got if step == "email-1"} == {
        (C25, "email-1"),
        (C26, "email-1"),
    }


def test_one_booking_in_both_campaigns_gets_one_set_of_reminders(world: World) -> None:
    reminders = {"reminder-1", "reminder-2"}

    def reminded() -> bool:
        return reminders <= {step for _, step in world.steps_of(BOOKED)}

    world.wait(reminded, 420, "reminders missing")
    got = world.received(BOOKED)
    sent = [(slug, step) for _, slug, step in got]
    # One set: each reminder once, under the campaign the booking link named.
    for step in reminders:
        assert sent.count((C26, step)) == 1 and (C25, step) not in sent, got
    # Both nurtures stopped after the welcome (reminder-2 went 3.5 minutes after the
    # signup: both email 2s were long due).
    assert sorted(x for x in sent if x[1].startswith("email-")) == [
        (C25, "email-1"),
        (C26, "email-1"),
    ], got


def test_nurture_emails_keep_the_longer_gap_across_campaigns(world: World) -> None:
    both = {(C25, "email-2"), (C26, "email-2")}
    world.wait(lambda: both <= world.steps_of(BOTH), 480, "email 2s missing")
    got = [(when, slug, step) for when, slug, step in world.received(BOTH) if "email-" in step]
    # The welcomes count as the last nurture email for the other campaign.
    welcomes = [(when, slug) for when, slug, step in got if step == "email-1"]
    later = [(when, slug) for when, slug, step in got if step != "email-1"]
    last_at, last_slug = max(welcomes)
    gaps = {C25: timedelta(0), C26: GAP}
    for when, slug in later:
        assert when - last_at >= max(gaps[slug], gaps[last_slug]), got
        last_at, last_slug = when, slug
    assert len(later) >= 2, got


def test_closed_campaign_takes_the_signup_and_sends_nothing(world: World) -> None:
    answer = world.answers[(CLOSED, CLOSED_PERSON)]
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["enrolled"] is False and body["reason"] == "campaign closed"
    # Ingested with everyone else's (one run for all campaigns), and the closed campaign's
    # schedule has ticked since: nothing went, from any campaign.
    after = time.time()
    schedule = campaign_name(CLOSED, "send_schedule")
    world.wait(lambda: world.dev.schedule_ticks(schedule, after=after), 150, "no tick")
    assert world.steps_of(CLOSED_PERSON) == set()


def test_broken_folder_answers_503_and_the_others_keep_sending(world: World) -> None:
    answer = world.answers[(BROKEN, BROKEN_PERSON)]
    assert answer.status_code == 503, answer.text
    assert "Retry-After" in answer.headers
    assert world.steps_of(BROKEN_PERSON) == set()
    # Sent while the broken folder was there: welcomes and later emails of both campaigns.
    assert {(C25, "email-2"), (C26, "email-2")} <= world.steps_of(BOTH)
    assert (C25, "email-1") in world.steps_of(SOLO_25)


def pause(world: World, slug: str, paused: bool) -> None:
    job, config = (
        ("pause_sending", {"pause": True, "reason": "copy review"})
        if paused
        else ("resume_sending", {"pause": False})
    )
    op = campaign_name(slug, "send_switch")
    run = world.dev.launch(campaign_name(slug, job), {"ops": {op: {"config": config}}})
    # The run sets the campaign's switch; it succeeds once the switch is set.
    done = lambda: world.dev.run_status(run) == "SUCCESS"  # noqa: E731
    world.wait(done, 180, f"{slug} paused={paused}")


@pytest.mark.parametrize(("slug", "other"), [(C25, C26), (C26, C25)])
def test_pausing_one_campaign_holds_only_its_emails(world: World, slug: str, other: str) -> None:
    held, sent = f"held.{slug}@x.com", f"sent.{slug}@x.com"
    pause(world, slug, paused=True)
    try:
        assert world.post_signup(slug, held).status_code == 202
        assert world.post_signup(other, sent).status_code == 202
        world.wait(lambda: (other, "email-1") in world.steps_of(sent), 300, "other held")
        # The paused campaign's schedule ticks with the welcome due: nothing goes.
        after = time.time()
        schedule = campaign_name(slug, "send_schedule")

        def ticked() -> bool:
            assert world.steps_of(held) == set(), "sent while paused"
            return bool(world.dev.schedule_ticks(schedule, after=after))

        world.wait(ticked, 150, "no tick of the paused campaign")
        assert world.steps_of(held) == set()
    finally:
        pause(world, slug, paused=False)
    # Held, not lost.
    world.wait(lambda: (slug, "email-1") in world.steps_of(held), 240, "not sent on resume")
