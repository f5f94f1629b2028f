"""Benchmark: Notion as a sync target, at Notion's and Resend's real limits.

Two scenarios, both against the tests' HTTP fakes with their rate limits on (Notion:
`FakeNotion(rate_limit=3.0, burst=3)`, 429 + Retry-After beyond it; Resend: 2 requests/s),
in real time, on an SQLite store in a temp folder:

- burst: N signups arrive at once. They are ingested into the store in chunks of 500
  (`upsert_signups`, as ingestion runs do); meanwhile send runs (`due_plan` +
  `services.sending.deliver` with `ResendSender`, batches of 100, the send journal) send
  every welcome, and the Notion sync (`sync_to_notion`, a fresh client paced at 3
  requests/s for each pass) drains the queue, each pass started by the rule of
  `notion_sync_sensor` (100 contacts waiting, or the oldest change waiting
  XMAS_NOTION_SYNC_DELAY_SECONDS). The CRM holds a contact for every address. By default
  `notion import` ran first (`import_from_notion`: the Email Sequence DB and the CRM read
  whole, 1 request per 100 pages plus the schema, reported apart; `contacts_complete` and
  `sequences_complete` are then set, so the sync looks nobody up and creates without
  looking first). With `--no-import` the sync looks contacts up (1 query per 100) and
  looks for each page before creating it (1 query per signup).
  Reported: when the last welcome was accepted (target: within 5 minutes), when Notion
  was fully in step (queue empty and every page there with its welcome's sent date)
  against the physical bound (Notion writes / 3 requests/s; target: within 10%), peak
  queue depth, and requests per signup and per email.
- steady: N contacts whose pages are in step get their second email (one send run), then
  one sync: requests per email (one page update each is the least it can cost) and emails
  synced per second against what 3 requests/s allows. Its setup runs unthrottled.

Request attribution (every request the fake answered, sorted by `bench/notion_ledger.py`,
each counted once): per signup = Email Sequence creates + CRM contact updates + lookups
(CRM contacts, and a page looked up before a create); per email = everything else (Email
Sequence updates, schema reads, the edits sensor's polls with `--with-edits`, anything
unexpected). 429 replies are counted in their kind and shown apart.

`--with-edits` also runs what `notion_edits_sensor` does every XMAS_SENSOR_INTERVAL_SECONDS
(`apply_notion_edits`, its own client paced at the same rate, as the sensor's process has)
alongside the burst: its polls share Notion's limit with the sync.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_notion.py [-n 200] [--steady 100]
[--no-import] [--with-edits] [--quick]`. The default (200 signups, about 3 minutes) is what
`make bench` runs; `-n 5000` is the full burst of the issue (about an hour: 10,000 writes
at 3 requests/s); `--quick` is a smoke run of a few seconds (120 signups, Notion at 30
requests/s). Prints a table and one line of JSON; exits 1 when a target or a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The fakes live with the tests; make the repository importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.notion_ledger import LedgerNotion  # noqa: E402
from xmas_pipeline.adapters.notion.http import NotionCallError  # noqa: E402
from xmas_pipeline.adapters.notion.sync import NotionSync  # noqa: E402
from xmas_pipeline.adapters.resend_sender import ResendSender  # noqa: E402
from xmas_pipeline.adapters.sql.journal import SqlSendJournal  # noqa: E402
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages  # noqa: E402
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue  # noqa: E402
from xmas_pipeline.adapters.sql.store import SqlStore  # noqa: E402
from xmas_pipeline.core.campaign import Campaign, load_campaign  # noqa: E402
from xmas_pipeline.core.context import message_context  # noqa: E402
from xmas_pipeline.core.ports import OutgoingEmail, SendResult  # noqa: E402
from xmas_pipeline.core.render import Renderer, load_template_dir  # noqa: E402
from xmas_pipeline.core.unsubscribe import unsubscribe_url  # noqa: E402
from xmas_pipeline.dagster_defs.notion import BACKLOG  # noqa: E402
from xmas_pipeline.services.notion_edits import apply_notion_edits  # noqa: E402
from xmas_pipeline.services.notion_import import import_from_notion  # noqa: E402
from xmas_pipeline.services.notion_sync import SyncReport  # noqa: E402
from xmas_pipeline.services.planning import due_plan  # noqa: E402
from xmas_pipeline.services.sending import Envelope, deliver  # noqa: E402
from xmas_pipeline.settings import Settings  # noqa: E402
from xmas_pipeline_tests.fakes.notion_workspace import (  # noqa: E402
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake  # noqa: E402
from xmas_pipeline_tests.support.notion_sync import sync_pass as one_pass  # noqa: E402

NOTION_RATE = 3.0
RESEND_RATE = 2
INGEST_CHUNK = 500  # signups per ingestion run
SENSOR_TICK_S = 1.0  # how often the emulated notion_sync_sensor looks
PUBLIC_URL = "https://campaign.example.com"
POSTAL = "BusOS, 100 King St W, Toronto ON"
SECRET = "bench-unsubscribe-secret"
SEQUENCES_DB = "Email Sequence"
CONTACTS_DB = "BusinessX Canada"

# Targets from the issue.
LAST_WELCOME_S = 300.0
SYNC_SLACK = 1.10  # sync time / (writes / rate)
PER_EMAIL = 1.05
PER_SIGNUP = 2.0


class TimedSender(ResendSender):
    """`ResendSender` that notes when it last had an email accepted."""

    last_accepted: float = 0.0

    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        results = super().send(emails)
        if any(r.status == "sent" for r in results):
            self.last_accepted = time.monotonic()
        return results


@dataclass
class Requests:
    """Requests the fake answered, attributed (see the module docstring)."""

    creates: int = 0
    sequence_updates: int = 0
    contact_updates: int = 0
    lookups: int = 0
    schema: int = 0
    polls: int = 0  # the edits sensor's queries
    rate_limited: int = 0  # 429 replies (also counted in their kind)
    other: int = 0
    total: int = 0

    @property
    def writes(self) -> int:
        return self.creates + self.sequence_updates + self.contact_updates

    @property
    def for_signups(self) -> int:
        return self.creates + self.contact_updates + self.lookups

    @property
    def for_emails(self) -> int:
        return self.total - self.for_signups

    @classmethod
    def of(cls, fake: LedgerNotion) -> Requests:
        kinds, _ = fake.snapshot()
        known = {
            f"create {SEQUENCES_DB}": "creates",
            f"update {SEQUENCES_DB}": "sequence_updates",
            f"update {CONTACTS_DB}": "contact_updates",
            f"lookup {CONTACTS_DB}": "lookups",
            f"lookup {SEQUENCES_DB}": "lookups",
            "429": "rate_limited",
        }
        found = cls(total=sum(n for kind, n in kinds.items() if kind != "429"))
        for kind, count in kinds.items():
            name = next(
                (
                    n
                    for prefix, n in (("schema ", "schema"), ("poll ", "polls"))
                    if kind.startswith(prefix)
                ),
                known.get(kind, "other"),
            )
            setattr(found, name, getattr(found, name) + count)
        return found


@dataclass
class Burst:
    signups: int
    imported: bool
    notion_rate: float
    with_edits: bool = False
    emails: int = 0
    ingested_s: float = 0.0  # the last signup in the store
    last_welcome_s: float = 0.0  # the last welcome accepted by Resend
    resend_requests: int = 0
    in_sync_s: float = 0.0  # queue empty, every page in Notion with its sent date
    bound_s: float = 0.0  # Notion writes / rate
    ratio: float = 0.0
    peak_queue: int = 0
    passes: int = 0
    first_pass_s: float = 0.0  # when the emulated sensor started the first sync pass
    import_requests: int = 0  # `notion import` before the burst (not with --no-import)
    import_s: float = 0.0
    edit_ticks: int = 0  # with --with-edits: the edits sensor's ticks during the burst
    requests: Requests = field(default_factory=Requests)
    problems: list[str] = field(default_factory=list)

    @property
    def per_signup(self) -> float:
        return self.requests.for_signups / max(1, self.signups)

    @property
    def per_email(self) -> float:
        return self.requests.for_emails / max(1, self.emails)


@dataclass
class Steady:
    emails: int
    notion_rate: float
    seconds: float = 0.0
    requests: Requests = field(default_factory=Requests)
    problems: list[str] = field(default_factory=list)

    @property
    def per_email(self) -> float:
        return self.requests.total / max(1, self.emails)

    @property
    def share_of_ceiling(self) -> float:
        # One request per email is the least a sync can cost: `rate` emails/s at best.
        return (self.emails / self.seconds) / self.notion_rate if self.seconds else 0.0


# -- shared helpers -------------------------------------------------------------------------


def paced_client(ws: Workspace, rate: float) -> NotionSync:
    """A sync client as a run makes one: paced, on the real clock."""
    return ws.client(rate_per_s=rate, sleep=time.sleep, clock=time.monotonic, timeout_s=10.0)


def send_run(store: SqlStore, campaign: Campaign, sender: ResendSender, run: int) -> int:
    """One send run as `deliveries` makes it: plan from the store now, then the send path.
    Returns how many emails were sent."""
    plan, _ = due_plan(store, campaign, datetime.now(UTC))
    if plan.empty:
        return 0

    def link(email: str) -> str:
        return unsubscribe_url(PUBLIC_URL, email, SECRET)

    report = deliver(
        store=store,
        sender=sender,
        renderer=Renderer(load_template_dir()),
        campaign=campaign,
        plan=plan,
        context_for=lambda row: message_context(row, campaign, link(row["email"]), POSTAL),
        envelope=Envelope(from_email="BusOS <hello@example.com>", unsubscribe_url=link),
        journal=SqlSendJournal(store.url, engine=store.engine, holder=f"send-{run}"),
    )
    return len(report.sent)


def sync_pass(
    store: SqlStore, ws: Workspace, campaign: Campaign, rate: float, holder: str
) -> SyncReport:
    return one_pass(store, paced_client(ws, rate), campaign, holder)


def check_pages(fake: LedgerNotion, ws: Workspace, addresses: list[str], step: int) -> list[str]:
    """What is wrong with the Email Sequence DB: a page missing, doubled, or without the
    sent date of `step`."""
    rows = fake.rows(ws.sequences)
    emails = [row["Email"] for row in rows]
    problems = []
    if len(emails) != len(set(emails)):
        problems.append(f"{len(emails) - len(set(emails))} duplicate Email Sequence pages")
    missing = set(addresses) - set(emails)
    if missing:
        problems.append(f"{len(missing)} contacts without a page")
    undated = [row["Email"] for row in rows if not row.get(f"Email {step} Sent")]
    if undated:
        problems.append(f"{len(undated)} pages without Email {step} Sent")
    return problems


def check_resend(resend: Any, addresses: list[str], step: str) -> list[str]:
    """What is wrong with what Resend accepted: an email of `step` missing or doubled."""
    sent = Counter((mail.to[0], mail.tags.get("step")) for mail in resend.accepted)
    problems = []
    twice = sum(1 for count in sent.values() if count > 1)
    if twice:
        problems.append(f"{twice} emails accepted more than once")
    lost = sum(1 for address in addresses if not sent[(address, step)])
    if lost:
        problems.append(f"{lost} {step} emails never accepted")
    return problems


# -- the burst ------------------------------------------------------------------------------


def burst(n: int, rate: float, imported: bool, with_edits: bool, workdir: Path) -> Burst:
    campaign = load_campaign()  # the shipped cadence: only welcomes fall due within the hour
    result = Burst(signups=n, imported=imported, notion_rate=rate, with_edits=with_edits)
    addresses = [f"burst{i}@example.com" for i in range(n)]
    shipped = Settings.of()
    delay = shipped.notion_sync_delay_seconds
    with (
        LedgerNotion(rate_limit=rate, burst=3) as notion,
        running_fake(rate_limit=RESEND_RATE, window_s=1.0) as resend,
    ):
        ws = busos_workspace(notion)
        for address in addresses:
            add_contact(notion, ws, address)  # seeded directly: not a request
        store = SqlStore(f"sqlite:///{workdir / 'burst.db'}")
        store.prepare(campaign)
        queue = SqlNotionQueue(store.url, engine=store.engine)

        if imported:
            # What a deployment runs once before going live: `xmas-pipeline notion import`.
            started = time.monotonic()
            client = paced_client(ws, rate)
            try:
                import_from_notion(store=store, notion=client, campaign=campaign)
            finally:
                client.close()
            result.import_requests = notion.total
            result.import_s = time.monotonic() - started
            time.sleep(1.0)  # the fake's bucket refills, as it would before a real burst
        notion.reset_counts()

        now = datetime.now(UTC)
        events = [signup_event(i, email=a, at=now) for i, a in enumerate(addresses)]
        ingested = threading.Event()
        sent_all = threading.Event()
        failures: list[str] = []
        sender = TimedSender(DEFAULT_API_KEY, base_url=resend.base_url, rate_per_s=RESEND_RATE)
        t0 = time.monotonic()

        def ingest() -> None:
            try:
                for start in range(0, n, INGEST_CHUNK):
                    store.upsert_signups(campaign, events[start : start + INGEST_CHUNK])
                result.ingested_s = time.monotonic() - t0
            except Exception as error:  # noqa: BLE001 - reported, and the bench fails
                failures.append(f"ingestion: {error!r}")
            finally:
                ingested.set()

        def send() -> None:
            run = 0
            try:
                while True:
                    finished = ingested.is_set()  # read before planning: nothing missed
                    run += 1
                    result.emails += send_run(store, campaign, sender, run)
                    if finished and due_plan(store, campaign, datetime.now(UTC))[0].empty:
                        break
                    time.sleep(0.2)  # send_after_signups_sensor reacts to the next ingestion
            except Exception as error:  # noqa: BLE001
                failures.append(f"sending: {error!r}")
            finally:
                sent_all.set()

        def watch() -> None:
            while not synced.is_set():
                result.peak_queue = max(result.peak_queue, queue.stats(campaign).depth)
                synced.wait(1.0)

        def poll_edits() -> None:
            # What notion_edits_sensor does at each tick, from its own process.
            while True:
                client = paced_client(ws, rate)
                try:
                    result.edit_ticks += 1
                    apply_notion_edits(
                        store=store,
                        pages=SqlNotionPages(store.url, engine=store.engine),
                        notion=client,
                        campaign=campaign,
                    )
                except NotionCallError as error:
                    failures.append(f"edits tick: {error}")
                finally:
                    client.close()
                if synced.wait(shipped.sensor_interval_seconds):
                    return

        synced = threading.Event()
        threads = [
            threading.Thread(target=ingest, name="ingest"),
            threading.Thread(target=send, name="send"),
            threading.Thread(target=watch, name="watch"),
        ]
        if with_edits:
            threads.append(threading.Thread(target=poll_edits, name="edits"))
        for thread in threads:
            thread.start()
        try:
            while True:
                stats = queue.stats(campaign)
                waited = (
                    (datetime.now(UTC) - stats.oldest_queued_at).total_seconds()
                    if stats.oldest_queued_at
                    else 0.0
                )
                if stats.depth == 0 and sent_all.is_set():
                    break
                if stats.ready and (stats.ready >= BACKLOG or waited >= delay):
                    if not result.passes:
                        result.first_pass_s = time.monotonic() - t0
                    result.passes += 1
                    report = sync_pass(store, ws, campaign, rate, f"sync-{result.passes}")
                    if report.failed:
                        failures.append(f"sync: {report.failed[:3]}")
                    continue
                time.sleep(SENSOR_TICK_S)  # the sensor's next look
            result.in_sync_s = time.monotonic() - t0
        finally:
            synced.set()
            for thread in threads:
                thread.join()
            sender.close()
        result.last_welcome_s = sender.last_accepted - t0 if sender.last_accepted else math.inf
        result.resend_requests = resend.request_count
        result.requests = Requests.of(notion)
        result.bound_s = result.requests.writes / rate
        result.ratio = result.in_sync_s / result.bound_s if result.bound_s else math.inf
        result.problems = failures + check_pages(notion, ws, addresses, 1)
        result.problems += check_resend(resend, addresses, "email-1")
        if result.emails != n:
            result.problems.append(f"{result.emails} welcomes sent for {n} signups")
        store.dispose()
    return result


# -- steady state ---------------------------------------------------------------------------


def steady(n: int, rate: float, workdir: Path) -> Steady:
    # No send window and no minimum gap: the second email is due whatever the hour.
    campaign = load_campaign().model_copy(update={"send_window": None, "min_gap": timedelta(0)})
    result = Steady(emails=n, notion_rate=rate)
    addresses = [f"steady{i}@example.com" for i in range(n)]
    with (
        LedgerNotion(rate_limit=None) as notion,
        running_fake(rate_limit=None) as resend,
    ):
        ws = busos_workspace(notion)
        for address in addresses:
            add_contact(notion, ws, address)
        store = SqlStore(f"sqlite:///{workdir / 'steady.db'}")
        # Signed up a day ago; welcomed and synced (unthrottled: this is only the setup).
        day_ago = datetime.now(UTC) - timedelta(hours=25)
        store.upsert_signups(
            campaign, [signup_event(i, email=a, at=day_ago) for i, a in enumerate(addresses)]
        )
        fast = ResendSender(DEFAULT_API_KEY, base_url=resend.base_url, rate_per_s=1000)
        welcomed = send_run(store, campaign, fast, 1)
        sync_pass(store, ws, campaign, math.inf, "setup")
        if welcomed != n or SqlNotionQueue(store.url, engine=store.engine).stats(campaign).depth:
            result.problems.append("setup: not every contact welcomed and synced")

        second = send_run(store, campaign, fast, 2)  # the second email, to everyone
        fast.close()
        if second != n:
            result.problems.append(f"{second} second emails sent for {n} contacts")
        notion.rate_limit = rate  # Notion's limit from here on
        time.sleep(1.0)
        notion.reset_counts()
        started = time.monotonic()
        report = sync_pass(store, ws, campaign, rate, "steady")
        result.seconds = time.monotonic() - started
        result.requests = Requests.of(notion)
        if report.failed or report.stopped:
            result.problems.append(f"sync: {report.stopped} {report.failed[:3]}")
        result.problems += check_pages(notion, ws, addresses, 2)
        store.dispose()
    return result


# -- report ---------------------------------------------------------------------------------


def verdicts(b: Burst | None, s: Steady | None, timing: bool = True) -> list[tuple[str, str, bool]]:
    """(what, measured vs target, met) for each target. Without `timing` (a quick run,
    where a sensor tick and the schema reads weigh on seconds of work) the two time
    targets are shown, not judged."""
    out: list[tuple[str, str, bool]] = []
    if b is not None:
        out += [
            (
                "last welcome accepted",
                f"{b.last_welcome_s:.1f} s (target <= {LAST_WELCOME_S:.0f} s)",
                b.last_welcome_s <= LAST_WELCOME_S or not timing,
            ),
            (
                "Notion in sync / bound",
                f"{b.ratio:.3f} (target <= {SYNC_SLACK:.2f})",
                b.ratio <= SYNC_SLACK or not timing,
            ),
            (
                "burst requests per email",
                f"{b.per_email:.3f} (target <= {PER_EMAIL})",
                b.per_email <= PER_EMAIL,
            ),
            (
                "burst requests per signup",
                f"{b.per_signup:.3f} (target <= {PER_SIGNUP})",
                b.per_signup <= PER_SIGNUP,
            ),
        ]
        out += [(f"burst check: {p}", "", False) for p in b.problems]
    if s is not None:
        out.append(
            (
                "steady requests per email",
                f"{s.per_email:.3f} (target <= {PER_EMAIL})",
                s.per_email <= PER_EMAIL,
            )
        )
        out += [(f"steady check: {p}", "", False) for p in s.problems]
    return out


def print_report(
    b: Burst | None, s: Steady | None, marks: list[tuple[str, str, bool]], out: Callable
) -> None:
    if b is not None:
        r = b.requests
        crm = (
            f"`notion import` ran first ({b.import_requests} requests, {b.import_s:.1f} s)"
            if b.imported
            else "no `notion import`: the sync looks contacts and pages up"
        )
        out(
            f"burst: {b.signups} signups at once; Notion {b.notion_rate:g} requests/s, "
            f"Resend {RESEND_RATE} requests/s (batches of 100); CRM holds them all; {crm}"
        )
        rows = [
            ("all signups in the store", f"{b.ingested_s:.1f} s"),
            ("welcome emails sent", f"{b.emails}"),
            (
                "last welcome accepted",
                f"{b.last_welcome_s:.1f} s ({b.resend_requests} Resend requests)",
            ),
            (
                "Notion fully in sync",
                f"{b.in_sync_s:.1f} s ({b.passes} sync passes, the first at "
                f"{b.first_pass_s:.1f} s)",
            ),
            ("physical bound", f"{b.bound_s:.1f} s ({r.writes} writes / {b.notion_rate:g}/s)"),
            ("in sync / bound", f"{b.ratio:.3f}"),
            ("peak queue depth", f"{b.peak_queue}"),
            (
                "creates / contact updates / lookups",
                f"{r.creates} / {r.contact_updates} / {r.lookups}",
            ),
            ("sequence updates", f"{r.sequence_updates}"),
            (
                "schema reads / polls / 429s / other",
                f"{r.schema} / {r.polls} ({b.edit_ticks} edits ticks) / {r.rate_limited} / "
                f"{r.other}",
            ),
            ("requests per signup", f"{b.per_signup:.3f} (creates + contact updates + lookups)"),
            ("requests per email", f"{b.per_email:.3f} (all the rest)"),
            (
                "total requests",
                f"{r.total} ({r.total / max(1, b.signups):.3f} per signup, "
                f"{r.total / max(1, b.emails):.3f} per email)",
            ),
        ]
        for name, value in rows:
            out(f"  {name:<38} {value}")
    if s is not None:
        r = s.requests
        out(
            f"steady: {s.emails} second emails to contacts in step; Notion {s.notion_rate:g} "
            "requests/s"
        )
        rows = [
            (
                "requests",
                f"{r.total} ({r.sequence_updates} sequence updates, {r.schema} "
                f"schema, {r.rate_limited} 429s)",
            ),
            ("requests per email", f"{s.per_email:.3f}"),
            (
                "sync time",
                f"{s.seconds:.1f} s ({s.emails / max(s.seconds, 1e-9):.2f} emails/s"
                f" = {s.share_of_ceiling:.1%} of {s.notion_rate:g}/s)",
            ),
        ]
        for name, value in rows:
            out(f"  {name:<38} {value}")
    out("targets:")
    for name, value, met in marks:
        out(f"  {'ok  ' if met else 'MISS'} {name:<34} {value}")


def as_json(b: Burst | None, s: Steady | None) -> dict[str, Any]:
    data: dict[str, Any] = {"bench": "notion"}
    if b is not None:
        data["burst"] = {
            **{k: v for k, v in asdict(b).items() if k != "requests"},
            "requests": {**asdict(b.requests), "writes": b.requests.writes},
            "per_signup": round(b.per_signup, 4),
            "per_email": round(b.per_email, 4),
        }
    if s is not None:
        data["steady"] = {
            **{k: v for k, v in asdict(s).items() if k != "requests"},
            "requests": asdict(s.requests),
            "per_email": round(s.per_email, 4),
            "share_of_ceiling": round(s.share_of_ceiling, 4),
        }
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, help="signups in the burst (default 200; 0: none)")
    parser.add_argument("--steady", type=int, help="contacts in steady (default 100; 0: none)")
    parser.add_argument(
        "--no-import", action="store_true", help="no `notion import` before the burst"
    )
    parser.add_argument(
        "--with-edits", action="store_true", help="notion_edits_sensor polls alongside"
    )
    parser.add_argument("--notion-rate", type=float, help=f"default {NOTION_RATE:g}/s")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 120 signups, 30 steady, Notion at 30/s"
    )
    args = parser.parse_args(argv)
    # Quick: above the sensor's backlog of 100, so the sync starts at once, as in a burst.
    n, steady_n, rate = (120, 30, 30.0) if args.quick else (200, 100, NOTION_RATE)
    n = n if args.n is None else args.n
    steady_n = steady_n if args.steady is None else args.steady
    rate = rate if args.notion_rate is None else args.notion_rate

    with tempfile.TemporaryDirectory(prefix="xmas-bench-notion-") as tmp:
        b = burst(n, rate, not args.no_import, args.with_edits, Path(tmp)) if n else None
        s = steady(steady_n, rate, Path(tmp)) if steady_n else None
    marks = verdicts(b, s, timing=not args.quick)
    print_report(b, s, marks, print)
    print(json.dumps(as_json(b, s), default=str))
    return 0 if all(met for _, _, met in marks) else 1


if __name__ == "__main__":
    sys.exit(main())
