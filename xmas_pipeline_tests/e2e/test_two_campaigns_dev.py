"""Two campaigns in one `xmas-pipeline dev`, for real: one server for the whole module
(testing mode, a send every minute) on a copy of the shipped campaigns folder with
christmas-2026's testing `min_gap` raised to 90 seconds and christmas-2025's testing
reminders 5, 3 and 1 minutes before the meeting, a folder that does not load (bad YAML)
and a campaign whose signups closed (a copy of christmas-2026). Signups go over HTTP to
the intake the server runs, each scenario with its own people:

1. each signup gets its own campaign's welcome;
2. pausing christmas-2026 holds only its emails (christmas-2025 keeps sending, to
   someone in both campaigns too), and resuming sends what it held;
3. an unsubscribe from christmas-2026's email stops christmas-2025's emails too;
4. a booking by someone in both campaigns gets one set of reminders and stops both
   nurtures from email 2 on;
5. someone in both campaigns gets both welcomes at once, and christmas-2025 (no gap of
   its own) keeps christmas-2026's gap before its next email;
6. the closed campaign answers 202 `enrolled: false` and sends nothing;
7. the broken folder's signup address answers 503 and the others keep sending.

Pausing christmas-2025 alone is shown in process (its schedule and the welcome sensor
evaluated for each campaign: `dagster/test_campaigns_runtime.py`); what only this server
shows, a real daemon tick of a paused campaign's schedule skipped and the held email sent
after resuming, christmas-2026's pause shows here.

The scenarios overlap on the one server, so the module takes about as long as its pause,
not the sum of everything: the fixture posts every signup and the booking at once
and the unsubscribe as soon as its emails are there; christmas-2026 is paused right after
the welcomes, while the others' evidence builds up (its own gap holds its next emails
anyway; christmas-2025, whose emails they watch, keeps sending).
Every wait polls the outbox or the daemon's runs and ticks with a deadline; a check that
something did not happen waits for a send run that would have done it, not a fixed time.
"""

from __future__ import annotations

import email
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.dagster_defs.jobs import (
    INGEST_EMAIL_EVENTS_JOB,
    INGEST_SIGNUPS_JOB,
    SEND_JOB,
)
from xmas_pipeline.dagster_defs.names import campaign_name
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.dagster_dev import DevServer, running_dev, wait_for
from xmas_pipeline_tests.support.pipeline_env import signup

# The pause waits on real minute ticks: up to 3.5 minutes beside another slow module, so
# the suite's 5-minute bound would leave too little room on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

SHIPPED = Path(__file__).resolve().parents[2] / "xmas_pipeline" / "campaigns"
C25, C26 = "christmas-2025", "christmas-2026"
CLOSED, BROKEN = "closed-2026", "broken-2027"
GAP = timedelta(seconds=90)  # christmas-2026's testing min_gap here; christmas-2025's is 0
GAPS = {C25: timedelta(0), C26: GAP}
# How long after the test saw the unsubscribe ingested an email may still have been
# written: a send run that had passed its gate just before then.
SLACK = timedelta(seconds=20)
# christmas-2025's testing reminders here: 5, 3 and 1 minutes before the meeting, two
# minutes apart, so that a send run falls between two of them even when the one-minute
# schedule's runs start late (a run that finds two due sends only the later one).
REMINDER_OFFSETS = "[5m, 3m, 1m]"

SOLO_25, SOLO_26 = "ann.solo25@x.com", "bob.solo26@x.com"
BOTH = "gail.both@x.com"  # scenario 5
UNSUB = "uma.unsub@x.com"  # scenario 3
BOOKED = "ben.booked@x.com"  # scenario 4
CLOSED_PERSON = "cal.closed@x.com"  # scenario 6
BROKEN_PERSON = "dee.broken@x.com"  # scenario 7
IN_BOTH = (BOTH, UNSUB, BOOKED)


def write_campaigns(folder: Path) -> None:
    """The shipped campaigns (christmas-2026 with a 90-second testing gap, christmas-2025
    with its testing reminders 5, 3 and 1 minutes before), a closed copy of christmas-2026,
    and a folder whose campaign file is not YAML."""
    shutil.copytree(SHIPPED, folder)
    file26 = folder / C26 / "campaign.yaml"
    text = file26.read_text()
    assert "\n  min_gap: 0s\n" in text  # the testing preset's gap, indented under it
    file26.write_text(text.replace("\n  min_gap: 0s\n", "\n  min_gap: 90s\n"))
    file25 = folder / C25 / "campaign.yaml"
    text = file25.read_text()
    assert "\n  reminder_offsets: [6m, 3m, 1m]\n" in text
    file25.write_text(
        text.replace(
            "\n  reminder_offsets: [6m, 3m, 1m]\n", f"\n  reminder_offsets: {REMINDER_OFFSETS}\n"
        )
    )

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


_RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) {
    ... on Runs { results { startTime endTime } } } }"""


@dataclass
class World:
    dev: DevServer
    campaigns: dict[str, Campaign]  # as the server runs them (testing mode)
    booking_start: datetime
    answers: dict[tuple[str, str], httpx.Response] = field(default_factory=dict)
    posted: dict[tuple[str, str], float] = field(default_factory=dict)  # epoch seconds
    unsubscribe: httpx.Response | None = None
    unsubscribed_at: float = 0.0  # epoch seconds the unsubscribe was posted

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

    def runs(self, job: str, status: str = "SUCCESS") -> list[dict[str, Any]]:
        variables = {"filter": {"pipelineName": job, "statuses": [status]}}
        return self.dev.graphql(_RUNS, variables)["runsOrError"].get("results", [])

    def ran_after(self, job: str, since: float) -> float | None:
        """When the first run of `job` that started after the epoch time `since` and
        succeeded ended (epoch seconds); None: none yet."""
        ends = [r["endTime"] for r in self.runs(job) if (r["startTime"] or 0) > since]
        return min(ends) if ends else None

    def sent_by_both_after(self, since: float) -> bool:
        """Has a send run of each campaign started after `since` and succeeded?"""
        return all(self.ran_after(campaign_name(s, SEND_JOB), since) for s in (C25, C26))

    def ingested(self, slug: str, person: str) -> float | None:
        """When that signup was surely in the store: the end of an ingest run that started
        after it was posted (each run reads its day's whole inbox folder)."""
        return self.ran_after(INGEST_SIGNUPS_JOB, self.posted[(slug, person)])

    def post_signup(self, slug: str, person: str) -> httpx.Response:
        url = f"{self.dev.intake_url}/webhook/campaigns/{slug}/signup"
        self.posted[(slug, person)] = time.time()
        answer = httpx.post(url, json=signup(person, red=2), timeout=30)
        self.answers[(slug, person)] = answer
        return answer

    def wait(self, what: Callable[[], Any], timeout: float, message: str) -> None:
        assert wait_for(what, timeout=timeout, interval=2), (
            f"{message}\nsent: {sorted(self.sent())}\nruns: {self.dev.runs()}\n"
            f"{self.dev.log_tail()}"
        )

    def timeline(self, start: datetime) -> str:
        """Every email in the outbox, in seconds after `start` (for the log)."""
        rows = sorted(
            (path.stat().st_mtime - start.timestamp(), path.name.removesuffix(".eml"))
            for path in self.outbox.glob("*.eml")
        )
        return "\n".join(f"  {t:6.1f}s {name}" for t, name in rows)

    def run_summary(self) -> str:
        """Per job: runs that succeeded and their mean and longest time (for the log)."""
        query = """{ runsOrError(limit: 500) { ... on Runs { results {
            jobName status startTime endTime } } } }"""
        runs = self.dev.graphql(query)["runsOrError"].get("results", [])
        times: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            if run["startTime"] and run["endTime"]:
                times[f"{run['jobName']} {run['status']}"].append(run["endTime"] - run["startTime"])
        return "\n".join(
            f"  {name}: {len(t)} runs, mean {sum(t) / len(t):.0f}s, max {max(t):.0f}s"
            for name, t in sorted(times.items())
        )


def unsubscribe_link(world: World, slug: str, person: str) -> str:
    header = str(world.eml(slug, person, "email-1")["List-Unsubscribe"]).strip("<>")
    link = urlsplit(header)
    assert link.path == "/unsubscribe" and link.query.startswith("token="), header
    return link.query


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
    assert [r.before for r in campaigns[C25].reminders] == [timedelta(minutes=m) for m in (5, 3, 1)]
    assert campaigns[CLOSED].slug == CLOSED and campaigns[CLOSED].signups_close is not None
    started = time.monotonic()
    with running_dev(
        root / "home", XMAS_TESTING_MODE="true", XMAS_CAMPAIGNS_DIR=str(folder)
    ) as dev:
        print(f"\nserver up in {time.monotonic() - started:.0f}s")
        # The meeting is 5.5 minutes away: reminder-1 (5 min before) due in 30 s,
        # reminder-2 (3 min before) in 2.5 minutes; made now, it has every reminder.
        now = datetime.now(UTC).replace(microsecond=0)
        world = World(dev, campaigns, now + timedelta(minutes=5, seconds=30))
        for person in (SOLO_25, *IN_BOTH):
            world.post_signup(C25, person)
        for person in (SOLO_26, *IN_BOTH):
            world.post_signup(C26, person)
        world.post_signup(CLOSED, CLOSED_PERSON)
        world.post_signup(BROKEN, BROKEN_PERSON)
        # Booked through a christmas-2025 email's link (`metadata.campaign`), with the
        # signups: no email 2 can be due before 90 seconds (christmas-2026's gap after the
        # other campaign's welcome), ample time to ingest the booking.
        booking = webhook_created(
            "bkTwo1", world.booking_start, at=now, email=BOOKED, name="Ben Booked"
        )
        booking["payload"]["metadata"]["campaign"] = C25
        answer = httpx.post(f"{dev.intake_url}/webhook/calcom-booking", json=booking, timeout=30)
        assert answer.status_code == 200, answer.text
        # The unsubscribe, as soon as both welcomes are there: the mail client's
        # one-click POST (RFC 8058) to the intake this server runs. Early, so that the
        # other campaign's next email falls due after it is stored.
        welcomes = {(C25, "email-1"), (C26, "email-1")}
        world.wait(lambda: welcomes <= world.steps_of(UNSUB), 240, "no welcomes")
        world.unsubscribed_at = time.time()
        world.unsubscribe = httpx.post(
            f"{dev.intake_url}/unsubscribe?{unsubscribe_link(world, C26, UNSUB)}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        print(f"signups to unsubscribe {time.monotonic() - started:.0f}s")
        yield world
        print(f"\nmodule ran {time.monotonic() - started:.0f}s; runs:\n{world.run_summary()}")
        print(world.timeline(now))


def test_each_signup_gets_its_own_campaigns_welcome(world: World) -> None:
    for slug, person in [(C25, SOLO_25), (C26, SOLO_26)] + [
        (s, p) for p in IN_BOTH for s in (C25, C26)
    ]:
        assert world.answers[(slug, person)].status_code == 202, world.answers[(slug, person)]
    wanted = {(C25, SOLO_25, "email-1"), (C26, SOLO_26, "email-1")} | {
        (slug, person, "email-1") for person in IN_BOTH for slug in (C25, C26)
    }
    world.wait(lambda: wanted <= world.sent(), 180, "welcomes missing")
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


def set_paused(world: World, slug: str, paused: bool) -> None:
    job, config = (
        ("pause_sending", {"pause": True, "reason": "copy review"})
        if paused
        else ("resume_sending", {"pause": False})
    )
    op = campaign_name(slug, "send_switch")
    run = world.dev.launch(campaign_name(slug, job), {"ops": {op: {"config": config}}})
    # The run sets the campaign's switch; it succeeds once the switch is set.
    done = lambda: world.dev.run_status(run) == "SUCCESS"  # noqa: E731
    world.wait(done, 150, f"{slug} paused={paused}")


def check_pause(
    world: World, slug: str, other: str, meanwhile: Callable[[], bool] = lambda: True
) -> None:
    """`slug` paused: its new signup gets nothing while its schedule ticks, a new signup
    of `other` is welcomed meanwhile (and `meanwhile` comes true); resumed, the held
    welcome goes."""
    held, control = f"held.{slug}@x.com", f"control.{other}@x.com"
    set_paused(world, slug, paused=True)
    try:
        assert world.post_signup(slug, held).status_code == 202
        assert world.post_signup(other, control).status_code == 202
        schedule = campaign_name(slug, "send_schedule")

        def held_through_a_tick() -> bool:
            assert world.steps_of(held) == set(), "sent while paused"
            stored = world.ingested(slug, held)
            if stored is None or (other, "email-1") not in world.steps_of(control):
                return False
            # The paused campaign's schedule has ticked with the welcome due: skipped.
            ticks = world.dev.schedule_ticks(schedule, after=stored)
            assert "SUCCESS" not in ticks, ticks  # no run asked for
            return "SKIPPED" in ticks and meanwhile()

        world.wait(held_through_a_tick, 200, f"no tick of the paused {slug}")
        assert world.steps_of(held) == set()
    finally:
        set_paused(world, slug, paused=False)
    # Held, not lost: the schedule's next run catches up.
    world.wait(lambda: (slug, "email-1") in world.steps_of(held), 150, "not sent on resume")


def christmas_2025_nurture_to_both(world: World) -> bool:
    """Has christmas-2025 sent someone in both campaigns a nurture email after the
    welcome?"""
    return any(slug == C25 and step != "email-1" for _, slug, step in world.received(BOTH))


def test_pausing_christmas_2026_holds_only_its_emails(world: World) -> None:
    """Right after the welcomes (christmas-2026's own gap holds its next emails for 90
    seconds anyway). Kept paused until christmas-2025 has also sent its email 2 to
    someone in both campaigns: a christmas-2025 email the pause must not hold, and the
    one the gap check below reads (with christmas-2026 sending every 2 minutes, its
    90-second gap would leave christmas-2025's runs no turn for several minutes)."""
    check_pause(world, C26, C25, meanwhile=lambda: christmas_2025_nurture_to_both(world))


def test_unsubscribing_from_one_campaign_stops_the_other(world: World) -> None:
    assert world.unsubscribe is not None and world.unsubscribe.status_code == 200, (
        world.unsubscribe and world.unsubscribe.text
    )
    ingested = lambda: world.ran_after(INGEST_EMAIL_EVENTS_JOB, world.unsubscribed_at)  # noqa: E731
    world.wait(ingested, 150, "unsubscribe not ingested")
    stored_at = datetime.fromtimestamp(ingested() or 0, UTC)
    # Had it not stopped christmas-2025, its email 2 would be due by the gap after the
    # last email, and a send run of each campaign that started after that would send it.
    last = max(when for when, _, _ in world.received(UNSUB))
    due_by = max(stored_at + SLACK, last + GAP) + timedelta(seconds=2)
    world.wait(lambda: world.sent_by_both_after(due_by.timestamp()), 180, "no send run after due")
    got = world.received(UNSUB)
    assert [when for when, _, _ in got if when > stored_at + SLACK] == [], got
    assert {(slug, step) for _, slug, step in got} == {(C25, "email-1"), (C26, "email-1")}, got
    # Meanwhile the others in christmas-2025 got their next emails.
    assert (C25, "email-2") in world.steps_of(SOLO_25)


def test_one_booking_in_both_campaigns_gets_one_set_of_reminders(world: World) -> None:
    reminders = {"reminder-1", "reminder-2"}

    def reminded() -> bool:
        return reminders <= {step for _, step in world.steps_of(BOOKED)}

    world.wait(reminded, 240, "reminders missing")
    # Had the booking left a nurture going, its email 2 would be due by the gap after the
    # welcomes; a send run of each campaign started after that.
    last_welcome = max(when for when, _, step in world.received(BOOKED) if step == "email-1")
    due_by = last_welcome + GAP + timedelta(seconds=2)
    world.wait(lambda: world.sent_by_both_after(due_by.timestamp()), 180, "no send run after due")
    got = world.received(BOOKED)
    sent = [(slug, step) for _, slug, step in got]
    # One set: each reminder once, under the campaign the booking link named.
    for step in reminders:
        assert sent.count((C25, step)) == 1 and (C26, step) not in sent, got
    assert {slug for slug, step in sent if step.startswith("reminder-")} == {C25}, got
    # Both nurtures stopped after the welcome.
    assert sorted(x for x in sent if x[1].startswith("email-")) == [
        (C25, "email-1"),
        (C26, "email-1"),
    ], got


def test_nurture_emails_keep_the_longer_gap_across_campaigns(world: World) -> None:
    """christmas-2025 has no gap of its own (its email 2 is due a minute after the
    signup), yet its email 2 to someone also in christmas-2026 waits that campaign's gap
    after christmas-2026's last email, the welcome included."""

    world.wait(lambda: christmas_2025_nurture_to_both(world), 240, "no christmas-2025 email 2")
    got = [(when, slug, step) for when, slug, step in world.received(BOTH) if "email-" in step]
    assert {(slug, step) for _, slug, step in got} >= {(C25, "email-1"), (C26, "email-1")}
    for i, (when, slug, step) in enumerate(got):
        if step == "email-1":
            continue  # the welcome goes at once
        for before, other, _ in got[:i]:
            need = GAPS[slug] if other == slug else max(GAPS[slug], GAPS[other])
            assert when - before >= need, (slug, step, got)


def test_closed_campaign_takes_the_signup_and_sends_nothing(world: World) -> None:
    answer = world.answers[(CLOSED, CLOSED_PERSON)]
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["enrolled"] is False and body["reason"] == "campaign closed"
    # Once the signup is in the store, a send run of the closed campaign has run: nothing
    # went, from any campaign.
    job = campaign_name(CLOSED, SEND_JOB)

    def ran_since_stored() -> bool:
        stored = world.ingested(CLOSED, CLOSED_PERSON)
        return stored is not None and world.ran_after(job, stored) is not None

    world.wait(ran_since_stored, 150, "no send run of the closed campaign")
    assert world.steps_of(CLOSED_PERSON) == set()


def test_broken_folder_answers_503_and_the_others_keep_sending(world: World) -> None:
    answer = world.answers[(BROKEN, BROKEN_PERSON)]
    assert answer.status_code == 503, answer.text
    assert "Retry-After" in answer.headers
    assert world.steps_of(BROKEN_PERSON) == set()
    # Sent while the broken folder was there: welcomes and later emails of both campaigns.
    later = {(C25, SOLO_25, "email-2"), (C26, SOLO_26, "email-2")}
    world.wait(lambda: later <= world.sent(), 150, "no email 2 of each campaign")
