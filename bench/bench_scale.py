"""Benchmark: the production topology at scale, from N posted signups to N welcome emails.

Starts the production topology as real processes (`xmas_pipeline_tests/support/production.py`:
Dagster on PostgreSQL, the code location as a gRPC code server, the webserver, the daemon)
with two intake processes on one inbox, `XMAS_TESTING_MODE=true` (the welcome is due at
once) and no Resend key (the sender is the outbox folder). A pool of client threads posts N
signups, each with its own address, spread over both intakes. Half way through, one intake
is killed (`kill -9` of its process group, as a crash would) and restarted a few seconds
later; a post that got no answer is retried on the other intake. The sensors ingest the
inbox and `send_after_signups_sensor` starts the send runs.

It then waits until every acknowledged (202) address has its welcome email in the outbox
and checks exactly once: every `.eml` is for a posted address, every acknowledged address
has exactly one welcome, no address has two of any step, the store holds one sequence per
welcomed address and one `messages` row per `.eml`.

Measures: wall time from the first post to the last welcome email, the posting rate
(acknowledged/s), the ingestion rate (new sequences/s over the span of the ingest_signups
runs, from their `email_sequences` materializations), the number of ingest and send runs,
and the code server's peak memory: RSS from /proc every 0.5 s of the code server itself,
of its whole process tree (the run workers are its children), and of the largest single
run worker. Prints a table and one line of JSON.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), as the topology tests do.
Run: `.venv/bin/python bench/bench_scale.py [-n 10000] [-c 16] [--sensor-interval 5]
[--timeout 900] [--keep]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import sqlalchemy as sa

# The harness lives with the tests; make the repository importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmas_pipeline.adapters.outbox import outbox_name  # noqa: E402
from xmas_pipeline.adapters.sql.tables import messages, sequences  # noqa: E402
from xmas_pipeline.core.campaign import load_campaign  # noqa: E402
from xmas_pipeline.dagster_defs.jobs import SEND_JOB  # noqa: E402
from xmas_pipeline.dagster_defs.names import campaign_name  # noqa: E402
from xmas_pipeline.dagster_defs.sensors import new_sequences  # noqa: E402
from xmas_pipeline_tests.support.dagster_dev import free_port, stop_group  # noqa: E402
from xmas_pipeline_tests.support.intake_process import live_processes  # noqa: E402
from xmas_pipeline_tests.support.production import (  # noqa: E402
    Production,
    running_production,
    wait_until,
)

PATH = "/webhook/christmas-signup"
KILLED = "intake"  # the harness's own intake is the one that crashes
EXTRA = "intake-2"  # the second intake, started here
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def body_for(email: str, i: int) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": "Pat",
        "business_name": "Scale & Co",
        "assessment_score": i % 101,
        "red_systems": i % 4,
        "orange_systems": i % 3,
        "yellow_systems": 1,
        "green_systems": 2,
        "gps_score": 40,
        "money_score": 55,
        "weakest_system_1": "Marketing",
        "weakest_system_2": "Sales",
        "revenue_leak_total": 9000,
    }


# -- the second intake -----------------------------------------------------------------------


class ExtraIntake:
    """A second `xmas-pipeline serve` on the same inbox and environment as the harness's
    intake, leading its own process group and carrying the harness's marker (so
    `Production.stop` finds it too)."""

    def __init__(self, prod: Production, port: int) -> None:
        self.prod = prod
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = self.prod.command("intake")
        command[command.index("--port") + 1] = str(self.port)
        with (self.prod.home / f"{EXTRA}.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.prod.home,
                env={**self.prod.env, "XMAS_TEST_RUN": self.prod.marker},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, self.prod.marker, grace=10)


def healthy(url: str, timeout: float = 60) -> bool:
    return bool(
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, timeout, 0.1)
    )


# -- the clients -----------------------------------------------------------------------------


@dataclass
class Poster:
    """Posts signups over two intakes; a post without an answer goes to the other one."""

    urls: list[str]
    tag: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)
    down_until: list[float] = field(default_factory=lambda: [0.0, 0.0])
    posted: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    acked_by: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)  # by intake
    refused: list[str] = field(default_factory=list)  # an answer other than 202
    lost: list[str] = field(default_factory=list)  # no answer from either intake, ever
    first_post: float = 0.0
    last_ack: float = 0.0
    phase: str = "before kill"  # set by the chaos thread

    def address(self, i: int) -> str:
        return f"scale-{self.tag}-{i:06d}@example.com"

    def clients(self) -> list[httpx.Client]:
        if not hasattr(self.local, "clients"):
            self.local.clients = [httpx.Client(base_url=u, timeout=30) for u in self.urls]
        return self.local.clients

    def close(self) -> None:
        for client in getattr(self.local, "clients", []):
            client.close()

    def post(self, i: int) -> None:
        email = self.address(i)
        body = body_for(email, i)
        with self.lock:
            self.posted.add(email)
            if not self.first_post:
                self.first_post = time.time()
        target = i % 2
        for attempt in range(40):
            if time.monotonic() < self.down_until[target]:
                target = 1 - target  # it failed a moment ago: the other one
            name = f"intake-{target + 1}"
            try:
                response = self.clients()[target].post(PATH, json=body)
            except httpx.TransportError:
                with self.lock:
                    self.unanswered[name] += 1
                self.down_until[target] = time.monotonic() + 1.0
                target = 1 - target
                if attempt % 2:  # both failed in a row: give them a moment
                    time.sleep(0.25)
                continue
            with self.lock:
                if response.status_code == 202:
                    self.acked.add(email)
                    self.acked_by[f"{name} {self.phase}"] += 1
                    self.last_ack = time.time()
                else:
                    self.refused.append(f"{email}: {response.status_code} {response.text[:200]}")
            return
        with self.lock:
            self.lost.append(email)


def post_all(poster: Poster, n: int, threads: int) -> None:
    def worker(indexes: range) -> None:
        try:
            for i in indexes:
                poster.post(i)
        finally:
            poster.close()

    # Each thread takes every `threads`-th index: the addresses go out roughly in order.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker, range(t, n, threads)) for t in range(threads)]:
            future.result()


@dataclass
class Chaos:
    """Kills the harness's intake once half the signups are acknowledged, then restarts it."""

    prod: Production
    poster: Poster
    at: int
    down_s: float
    events: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while len(self.poster.acked) < self.at:
            if self.stop.wait(0.02):
                return
        self.prod.kill(KILLED)  # kill -9 of its process group
        self.poster.phase = "while the other was down"
        self.events.append((time.time(), f"killed {KILLED} (intake-1) after {self.at} acks"))
        time.sleep(self.down_s)
        self.prod.start(KILLED)
        self.events.append((time.time(), "restarted intake-1"))
        if not healthy(self.prod.intake_url):
            self.events.append((time.time(), "intake-1 did not come back"))
            return
        self.poster.phase = "after restart"
        self.events.append((time.time(), "intake-1 answers again"))


# -- memory ----------------------------------------------------------------------------------


def rss(pid: int) -> int:
    with suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return 0


def cmdline(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
    return ""


@dataclass
class MemorySampler:
    """Peak RSS of the code server, of its process tree, and of its largest child subtree
    (a run worker), sampled from /proc."""

    prod: Production
    interval: float = 0.5
    server_peak: int = 0
    tree_peak: int = 0
    worker_peak: int = 0
    worker_peak_command: str = ""
    most_children: int = 0
    samples: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        server = self.prod.processes["code-server"].pid
        children: dict[int, list[int]] = defaultdict(list)
        for pid, (ppid, _group) in live_processes().items():
            children[ppid].append(pid)

        def subtree(root: int) -> list[int]:
            found, todo = [], [root]
            while todo:
                pid = todo.pop()
                found.append(pid)
                todo.extend(children.get(pid, []))
            return found

        sizes: dict[int, int] = {}

        def size(pid: int) -> int:
            if pid not in sizes:
                sizes[pid] = rss(pid)
            return sizes[pid]

        self.server_peak = max(self.server_peak, size(server))
        self.tree_peak = max(self.tree_peak, sum(size(p) for p in subtree(server)))
        direct = children.get(server, [])
        self.most_children = max(self.most_children, len(direct))
        for child in direct:
            total = sum(size(p) for p in subtree(child))
            if total > self.worker_peak:
                self.worker_peak = total
                self.worker_peak_command = cmdline(child)
        self.samples += 1

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with suppress(Exception):  # a process that ended between two reads
                self.sample()


# -- the outbox and the store ----------------------------------------------------------------


@dataclass
class Outbox:
    folder: Path
    campaign: str

    def emails(self) -> list[tuple[str, str, str, float]]:
        """Every `.eml`: (file stem, address, step with any suffix, mtime)."""
        found = []
        with suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.name.endswith(".eml"):
                    continue
                stem = entry.name[: -len(".eml")]
                parts = stem.split("__")
                address = parts[1] if len(parts) > 1 and parts[0] == self.campaign else ""
                step = "__".join(parts[2:])
                with suppress(FileNotFoundError):
                    found.append((stem, address, step, entry.stat().st_mtime))
        return found

    def welcomes(self) -> dict[str, float]:
        return {a: t for _s, a, step, t in self.emails() if step == "email-1"}


def store_rows(url: str, campaign: str) -> tuple[list[str], list[str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            keys = conn.execute(
                sa.select(sequences.c.contact_key).where(sequences.c.campaign == campaign)
            )
            ids = conn.execute(
                sa.select(messages.c.idempotency_key).where(messages.c.campaign == campaign)
            )
            return [r[0] for r in keys], [r[0] for r in ids]
    finally:
        engine.dispose()


def check_exactly_once(
    poster: Poster, outbox: Outbox, contacts: list[str], message_keys: list[str]
) -> list[str]:
    """Every violation of exactly once, as sentences (empty: all good)."""
    problems: list[str] = []
    emails = outbox.emails()
    per_step = Counter((address, step.split("__")[0]) for _s, address, step, _t in emails)
    welcomes = Counter(address for _s, address, step, _t in emails if step.startswith("email-1"))
    strangers = sorted({a for _s, a, _st, _t in emails if a not in poster.posted})
    if strangers:
        problems.append(f"{len(strangers)} emails for never-posted addresses, e.g. {strangers[:3]}")
    missing = sorted(a for a in poster.acked if welcomes[a] == 0)
    if missing:
        problems.append(f"{len(missing)} acknowledged addresses without a welcome: {missing[:3]}")
    twice = sorted(f"{a} {s} x{c}" for (a, s), c in per_step.items() if c > 1)
    if twice:
        problems.append(f"{len(twice)} address/step pairs emailed more than once: {twice[:3]}")
    welcomed = set(welcomes)
    if len(contacts) != len(set(contacts)) or set(contacts) != welcomed:
        problems.append(
            f"store: {len(contacts)} sequences ({len(set(contacts))} distinct) for "
            f"{len(welcomed)} welcomed addresses; without a welcome: "
            f"{sorted(set(contacts) - welcomed)[:3]}, without a sequence: "
            f"{sorted(welcomed - set(contacts))[:3]}"
        )
    stems = [s for s, _a, _st, _t in emails]
    rows = [outbox_name(k) for k in message_keys]
    if len(rows) != len(stems) or set(rows) != set(stems):
        problems.append(
            f"store: {len(rows)} messages rows for {len(stems)} .eml files; rows without a "
            f"file: {sorted(set(rows) - set(stems))[:3]}, files without a row: "
            f"{sorted(set(stems) - set(rows))[:3]}"
        )
    return problems


# -- the runs --------------------------------------------------------------------------------


@dataclass
class RunFigures:
    ingest_runs: int
    ingest_statuses: Counter[str]
    new_sequences: int
    ingest_span: tuple[float, float]
    ingest_busy_s: float
    ingest_longest_s: float
    send_runs: int
    send_statuses: Counter[str]
    send_busy_s: float
    sent: int
    first_send_start: float

    @property
    def ingestion_rate(self) -> float:
        span = self.ingest_span[1] - self.ingest_span[0]
        return self.new_sequences / span if span > 0 else 0.0


def deliveries_sent(instance: dg.DagsterInstance, run_id: str) -> int:
    sent = 0
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records:
        materialization = record.asset_materialization
        # Any campaign's `<prefix>/deliveries`.
        if materialization is not None and materialization.asset_key.path[-1] == "deliveries":
            value = materialization.metadata.get("sent")
            sent += int(getattr(value, "value", 0) or 0)
    return sent


def run_figures(instance: dg.DagsterInstance) -> RunFigures:
    ingest = instance.get_run_records(filters=dg.RunsFilter(job_name="ingest_signups"))
    send_job = campaign_name(load_campaign().slug, SEND_JOB)  # the default campaign's
    sends = instance.get_run_records(filters=dg.RunsFilter(job_name=send_job))
    starts = [r.start_time for r in ingest if r.start_time]
    ends = [r.end_time for r in ingest if r.end_time]
    durations = [r.end_time - r.start_time for r in ingest if r.start_time and r.end_time]
    send_durations = [r.end_time - r.start_time for r in sends if r.start_time and r.end_time]
    return RunFigures(
        ingest_runs=len(ingest),
        ingest_statuses=Counter(r.dagster_run.status.value for r in ingest),
        new_sequences=sum(new_sequences(instance, r.dagster_run.run_id) for r in ingest),
        ingest_span=(min(starts, default=0.0), max(ends, default=0.0)),
        ingest_busy_s=sum(durations),
        ingest_longest_s=max(durations, default=0.0),
        send_runs=len(sends),
        send_statuses=Counter(r.dagster_run.status.value for r in sends),
        send_busy_s=sum(send_durations),
        sent=sum(deliveries_sent(instance, r.dagster_run.run_id) for r in sends),
        first_send_start=min((r.start_time for r in sends if r.start_time), default=0.0),
    )


def runs_count(instance: dg.DagsterInstance) -> int:
    return len(instance.get_run_records())


# -- the benchmark ---------------------------------------------------------------------------


def wait_for_welcomes(
    prod: Production, instance: dg.DagsterInstance, poster: Poster, outbox: Outbox, timeout: float
) -> dict[str, float] | None:
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        welcomes = outbox.welcomes()
        waiting = len(poster.acked - welcomes.keys())
        if not waiting:
            return welcomes
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(
                f"  ... {len(welcomes)} welcomed, {waiting} acknowledged still waiting, "
                f"{len(instance.get_run_records(filters=dg.RunsFilter(job_name='ingest_signups')))}"
                " ingest runs so far",
                flush=True,
            )
        time.sleep(1)
    return None


def snapshot_when_idle(
    prod: Production, instance: dg.DagsterInstance, campaign: str, tries: int = 20
) -> tuple[list[str], list[str]] | None:
    """The store's sequences and messages while no run is in flight (and none started)."""
    for _ in range(tries):
        if not wait_until(lambda: prod.idle(instance), timeout=120, interval=1):
            continue
        before = runs_count(instance)
        time.sleep(2)  # anything a run wrote last is on disk
        rows = store_rows(prod.env["XMAS_DATABASE_URL"], campaign)
        if prod.idle(instance) and runs_count(instance) == before:
            return rows
    return None


def fmt_mb(value: int) -> str:
    return f"{value / MB:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--signups", type=int, default=10_000)
    parser.add_argument("-c", "--clients", type=int, default=16, help="client threads")
    parser.add_argument(
        "--sensor-interval",
        type=int,
        default=5,
        help="XMAS_SENSOR_INTERVAL_SECONDS (default 5; 0: the pipeline's default, 30)",
    )
    parser.add_argument("--down", type=float, default=3.0, help="seconds the intake stays dead")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for emails")
    parser.add_argument("--keep", action="store_true", help="keep the topology's folder")
    args = parser.parse_args()
    n = args.signups

    campaign = load_campaign().slug
    home = Path(tempfile.mkdtemp(prefix="xmas-bench-scale-"))
    env = {"XMAS_TESTING_MODE": "true"}
    if args.sensor_interval:
        env["XMAS_SENSOR_INTERVAL_SECONDS"] = str(args.sensor_interval)
    sensor = f"{args.sensor_interval} s" if args.sensor_interval else "default (30 s)"
    began = time.time()
    problems: list[str] = []
    figures: dict[str, Any] = {}
    print(f"topology in {home}; sensor interval {sensor}; {n} signups, {args.clients} clients")
    try:
        with running_production(home, env, intake_workers=1) as prod, prod.instance() as instance:
            extra = ExtraIntake(prod, free_port())
            sampler = MemorySampler(prod)
            try:
                extra.start()
                if not healthy(extra.url):
                    raise RuntimeError(
                        f"the second intake did not come up:\n{prod.log_tail(EXTRA)}"
                    )
                print(f"topology up in {time.time() - began:.1f} s", flush=True)
                memory = threading.Thread(target=sampler.run, name="memory", daemon=True)
                memory.start()
                figures, problems = measure(prod, instance, extra, sampler, campaign, n, args)
                sampler.stop.set()
                memory.join()
            finally:
                sampler.stop.set()
                extra.stop()
                if problems or not figures:
                    print(f"\n--- logs in {home} ---")
                    for name in ("daemon", "code-server", KILLED, EXTRA):
                        print(f"--- {name}.log (tail)\n{prod.log_tail(name, 15)}")
                    print(prod.describe_runs(instance))
    finally:
        total = time.time() - began
        if args.keep or problems or not figures:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    figures["benchmark_s"] = round(total, 1)
    print(f"whole benchmark (start to stop of the topology): {total:.1f} s")
    print(json.dumps(figures, sort_keys=True))
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def measure(
    prod: Production,
    instance: dg.DagsterInstance,
    extra: ExtraIntake,
    sampler: MemorySampler,
    campaign: str,
    n: int,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[str]]:
    poster = Poster(urls=[prod.intake_url, extra.url], tag=uuid.uuid4().hex[:6])
    chaos = Chaos(prod, poster, at=n // 2, down_s=args.down)
    chaos_thread = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    chaos_thread.start()
    post_all(poster, n, args.clients)
    posting_s = poster.last_ack - poster.first_post
    chaos.stop.set()
    chaos_thread.join()
    print(
        f"posted {n}: {len(poster.acked)} acknowledged in {posting_s:.1f} s; "
        f"unanswered posts {dict(poster.unanswered)}",
        flush=True,
    )
    for at, event in chaos.events:
        print(f"  {at - poster.first_post:6.1f} s  {event}")
    print(f"  acknowledged by: {dict(sorted(poster.acked_by.items()))}", flush=True)

    outbox = Outbox(Path(prod.env["XMAS_HOME"]) / "outbox", campaign)
    problems = [f"refused: {r}" for r in poster.refused[:5]]
    if poster.lost:
        problems.append(f"no intake answered {len(poster.lost)} posts: {poster.lost[:3]}")
    welcomes = wait_for_welcomes(prod, instance, poster, outbox, args.timeout)
    if welcomes is None:
        waiting = len(poster.acked - outbox.welcomes().keys())
        problems.append(
            f"timed out after {args.timeout:.0f} s: {waiting} acknowledged addresses have no "
            "welcome email"
        )
        return {}, problems
    last_welcome = max(welcomes[a] for a in poster.acked)
    wall_s = last_welcome - poster.first_post
    print(f"every acknowledged address welcomed, {wall_s:.1f} s after the first post", flush=True)

    snapshot = snapshot_when_idle(prod, instance, campaign)
    if snapshot is None:
        problems.append("the topology never went idle long enough to read the store")
        return {}, problems
    problems += check_exactly_once(poster, outbox, *snapshot)
    runs = run_figures(instance)
    emails = outbox.emails()
    stored_unacked = sorted(set(outbox.welcomes()) - poster.acked)

    ingest_start, ingest_end = runs.ingest_span
    figures: dict[str, Any] = {
        "signups": n,
        "acknowledged": len(poster.acked),
        "unanswered_posts": sum(poster.unanswered.values()),
        "stored_without_ack": len(stored_unacked),
        "client_threads": args.clients,
        "intakes": 2,
        "sensor_interval": args.sensor_interval or "default",
        "wall_s": round(wall_s, 1),
        "posting_s": round(posting_s, 1),
        "posting_per_s": round(len(poster.acked) / posting_s, 1),
        "ingest_runs": runs.ingest_runs,
        "new_sequences": runs.new_sequences,
        "ingest_span_s": round(ingest_end - ingest_start, 1),
        "ingestion_per_s": round(runs.ingestion_rate, 1),
        "send_runs": runs.send_runs,
        "emails_sent": runs.sent,
        "eml_files": len(emails),
        "code_server_peak_mb": round(sampler.server_peak / MB),
        "code_tree_peak_mb": round(sampler.tree_peak / MB),
        "run_worker_peak_mb": round(sampler.worker_peak / MB),
        "exactly_once": not problems,
    }
    first = poster.first_post
    rows = [
        ("signups posted (N)", f"{n:,}"),
        ("acknowledged (202)", f"{len(poster.acked):,}"),
        ("unanswered posts (retried)", f"{sum(poster.unanswered.values())}"),
        ("stored without a 202, welcomed", f"{len(stored_unacked)}"),
        ("client threads / intakes", f"{args.clients} / 2 (1 worker each)"),
        ("sensor interval", f"{args.sensor_interval} s" if args.sensor_interval else "30 s"),
        ("wall time, first post to last welcome", f"{wall_s:.1f} s"),
        ("posting", f"{posting_s:.1f} s, {figures['posting_per_s']:,} acknowledged/s"),
        (
            "ingestion",
            f"{runs.new_sequences:,} new sequences in {ingest_end - ingest_start:.1f} s, "
            f"{runs.ingestion_rate:,.1f}/s",
        ),
        (
            "ingest runs",
            f"{runs.ingest_runs} {dict(runs.ingest_statuses)}, busy {runs.ingest_busy_s:.0f} s, "
            f"longest {runs.ingest_longest_s:.1f} s",
        ),
        (
            "send runs",
            f"{runs.send_runs} {dict(runs.send_statuses)}, busy {runs.send_busy_s:.0f} s, "
            f"{runs.sent:,} emails sent",
        ),
        (
            "timeline (s after first post)",
            f"last 202 {poster.last_ack - first:.1f}, first ingest start "
            f"{ingest_start - first:.1f}, first send start {runs.first_send_start - first:.1f}, "
            f"last ingest end {ingest_end - first:.1f}, last welcome {wall_s:.1f}",
        ),
        (".eml files (all steps)", f"{len(emails):,} {dict(Counter(s for _, _, s, _ in emails))}"),
        ("code server peak RSS", fmt_mb(sampler.server_peak)),
        ("code server tree peak RSS", fmt_mb(sampler.tree_peak)),
        (
            "largest run worker peak RSS",
            f"{fmt_mb(sampler.worker_peak)} (most children at once: {sampler.most_children}, "
            f"{sampler.samples} samples)",
        ),
        ("  its command", sampler.worker_peak_command[:90]),
        ("exactly once", "yes" if not problems else "NO"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return figures, problems


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the topology is stopped and its databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
