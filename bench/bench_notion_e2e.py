"""Benchmark: Notion requests per email and per signup, end to end through a real
`xmas-pipeline dev` (targets: at most 1.2 per email and 2.1 per signup).

Starts the Notion fake (`FakeNotion(rate_limit=3.0, burst=3)`, with the request ledger of
`bench/notion_ledger.py`) and the Resend fake (2 requests/s) in this process, and
`xmas-pipeline dev` pointed at them: testing mode (7 emails a minute apart), a send run
every minute, the shipped sensor interval and sync delay unless told otherwise. The CRM
holds a contact for every address, and `xmas-pipeline notion import` runs first, as a
deployment does once before going live (its requests are reported apart; `--no-import`
skips it: the sync then looks each new page up before creating it, 1 query a signup). It
posts N signups (default 12) to the intake, waits until Resend has
accepted every email (N x 7) and Notion is in step (the sync queue empty, every Email
Sequence page with its 7 sent dates and Sequence Completed, every CRM contact filled in),
and counts what the fake answered up to that moment.

Attribution, every request counted once and none left out but the optional send log
(Email Analytics DB, only with `--send-log`): per signup = Email Sequence creates + CRM
contact updates + lookups (CRM contacts, and a page looked up before a create is
repeated); per email = everything else (Email Sequence updates, schema reads, the edits
sensor's polls, 429 replies, anything unexpected). The table breaks both down, with a
minute-by-minute timeline, so a miss says which requests caused it.

Takes about 9 minutes. Exits 1 when a target is missed, 2 when the run did not complete.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_notion_e2e.py [-n 12]
[--sensor-interval S] [--sync-delay S] [--no-import] [--send-log] [--keep]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# The fakes live with the tests; make the repository importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.notion_ledger import LedgerNotion  # noqa: E402
from xmas_pipeline.settings import Settings  # noqa: E402
from xmas_pipeline_tests.fakes.notion_workspace import (  # noqa: E402
    Workspace,
    add_contact,
    busos_workspace,
)
from xmas_pipeline_tests.fakes.resend_api import (  # noqa: E402
    DEFAULT_API_KEY,
    FakeResendAPI,
    running_fake,
)
from xmas_pipeline_tests.support.dagster_dev import DevServer, running_dev  # noqa: E402
from xmas_pipeline_tests.support.pipeline_env import signup  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STEPS = 7
PER_EMAIL = 1.2
PER_SIGNUP = 2.1
SEQUENCES_DB = "Email Sequence"
CONTACTS_DB = "BusinessX Canada"
ANALYTICS_DB = "Email Analytics"
SIGNUP_KINDS = (
    f"create {SEQUENCES_DB}",
    f"update {CONTACTS_DB}",
    f"lookup {CONTACTS_DB}",
    f"lookup {SEQUENCES_DB}",
)
RUNS = "{ runsOrError(limit: 1000) { ... on Runs { results { jobName status } } } }"


@dataclass
class Outcome:
    signups: int
    emails: int = 0
    completed: bool = False
    emails_s: float = 0.0  # every email accepted, from the first signup posted
    in_sync_s: float = 0.0  # Notion in step
    kinds: dict[str, int] = field(default_factory=dict)
    total: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    import_requests: int = 0  # `notion import` before dev started (not in the figures)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def send_log(self) -> int:
        return sum(n for k, n in self.kinds.items() if k.endswith(ANALYTICS_DB))

    @property
    def for_signups(self) -> int:
        return sum(self.kinds.get(k, 0) for k in SIGNUP_KINDS)

    @property
    def for_emails(self) -> int:
        return self.total - self.send_log - self.for_signups

    @property
    def per_signup(self) -> float:
        return self.for_signups / max(1, self.signups)

    @property
    def per_email(self) -> float:
        return self.for_emails / max(1, self.emails)


def accepted_emails(resend: FakeResendAPI, addresses: set[str]) -> int:
    return len({(m.to[0], m.tags.get("step")) for m in resend.accepted if m.to[0] in addresses})


def queue_depth(home: Path) -> int | None:
    """Contacts waiting for Notion in the dev store, read only (None: not there yet)."""
    path = home / "state.db"
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM notion_queue").fetchone()[0])
    except sqlite3.Error:
        return None


def notion_in_step(fake: LedgerNotion, ws: Workspace, addresses: set[str]) -> bool:
    rows = [r for r in fake.rows(ws.sequences) if r["Email"] in addresses]
    if len(rows) != len(addresses) or len({r["Email"] for r in rows}) != len(rows):
        return False
    if not all(
        all(r[f"Email {n} Sent"] for n in range(1, STEPS + 1)) and r["Sequence Completed"]
        for r in rows
    ):
        return False
    contacts = [r for r in fake.rows(ws.contacts) if r["email"] in addresses]
    return all(r["Assessment Score"] is not None for r in contacts)


def run_counts(dev: DevServer) -> dict[str, int]:
    try:
        runs = dev.graphql(RUNS)["runsOrError"]["results"]
    except (httpx.HTTPError, AssertionError, KeyError, TypeError):
        return {}
    return dict(Counter(r["jobName"] for r in runs))


def timeline(log: list[tuple[float, str, int]]) -> list[dict[str, Any]]:
    """Requests per minute of the ledger's log, by kind (a refused one as `429`)."""
    minutes: dict[int, Counter[str]] = {}
    for at, kind, status in log:
        bucket = minutes.setdefault(int(at // 60), Counter())
        bucket["429" if status == 429 else kind] += 1
    return [{"minute": m, **dict(sorted(c.items()))} for m, c in sorted(minutes.items())]


def absolute_pythonpath() -> None:
    """`running_dev` starts the CLI in `xmas_pipeline_tests/` (its REPO), and the child
    inherits PYTHONPATH: a relative entry such as `.` would put that folder first on the
    path, where its `dagster` test package hides the real dagster."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in parts)


def notion_import(home: Path, env: dict[str, str]) -> int:
    """`xmas-pipeline notion import` on the home dev will use; its Notion requests are
    read from its report."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "NOTION_"))}
    child.update(env, XMAS_HOME=str(home))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "xmas-pipeline"), "notion", "import"],
        cwd=REPO,
        env=child,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"notion import failed:\n{done.stdout}{done.stderr}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("Notion requests:")), "")
    return int(line.split()[2]) if line else 0


def measure(args: argparse.Namespace, home: Path) -> Outcome:
    outcome = Outcome(signups=args.n)
    addresses = {f"notion-e2e-{i:02d}@example.com" for i in range(args.n)}
    defaults = Settings.of()
    interval = args.sensor_interval or defaults.sensor_interval_seconds
    delay = args.sync_delay if args.sync_delay is not None else defaults.notion_sync_delay_seconds
    outcome.settings = {
        "sensor_interval_s": interval,
        "notion_sync_delay_s": delay,
        "notion_import": not args.no_import,
        "send_log": args.send_log,
    }
    with (
        LedgerNotion(rate_limit=3.0, burst=3) as fake,
        running_fake(rate_limit=2, window_s=1.0) as resend,
    ):
        ws = busos_workspace(fake, analytics=args.send_log)
        for address in sorted(addresses):
            add_contact(fake, ws, address)  # seeded directly: not a request
        env = {
            "XMAS_TESTING_MODE": "true",
            "XMAS_SEND_CRON": "* * * * *",
            "XMAS_SENSOR_INTERVAL_SECONDS": str(interval),
            "XMAS_NOTION_SYNC_DELAY_SECONDS": str(delay),
            "NOTION_TOKEN": fake.token,
            "NOTION_BASE_URL": fake.base_url,
            "NOTION_CONTACTS_DB_ID": ws.contacts,
            "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
            "RESEND_API_KEY": DEFAULT_API_KEY,
            "RESEND_API_URL": resend.base_url,
            # Unsubscribe links must be on a working address; loopback http is allowed.
            "XMAS_PUBLIC_URL": "http://localhost",
            "XMAS_POSTAL_ADDRESS": "BusOS, 100 King St W, Toronto ON",
        }
        if ws.analytics:
            env["NOTION_EMAIL_ANALYTICS_DB_ID"] = ws.analytics
        if not args.no_import:
            outcome.import_requests = notion_import(home, env)
        print(f"xmas-pipeline dev in {home}: {json.dumps(outcome.settings)}", flush=True)
        with running_dev(home, **env) as dev:
            fake.reset_counts()  # from here on: what the pipeline does for these signups
            started = time.monotonic()
            with httpx.Client(base_url=dev.intake_url, timeout=30) as client:
                for address in sorted(addresses):
                    answer = client.post("/webhook/christmas-signup", json=signup(address))
                    answer.raise_for_status()
            wanted = args.n * STEPS
            last_print = 0.0
            while time.monotonic() - started < args.timeout:
                outcome.emails = accepted_emails(resend, addresses)
                elapsed = time.monotonic() - started
                if outcome.emails == wanted and not outcome.emails_s:
                    outcome.emails_s = elapsed
                depth = queue_depth(home)
                if outcome.emails == wanted and depth == 0 and notion_in_step(fake, ws, addresses):
                    outcome.in_sync_s = elapsed
                    outcome.completed = True
                    break
                if elapsed - last_print >= 30:
                    last_print = elapsed
                    print(
                        f"  {elapsed:5.0f} s: {outcome.emails}/{wanted} emails, queue {depth}, "
                        f"{fake.total} Notion requests",
                        flush=True,
                    )
                time.sleep(1.0)
            kinds, log = fake.snapshot()
            outcome.kinds = kinds
            outcome.total = sum(n for k, n in kinds.items() if k != "429")
            outcome.timeline = timeline(log)
            outcome.runs = run_counts(dev)
            if not outcome.completed:
                print(dev.log_tail(40), file=sys.stderr)
    return outcome


def report(o: Outcome) -> bool:
    """Print the table; True when both targets are met."""
    print(
        f"signups {o.signups}, emails accepted {o.emails} (all by {o.emails_s:.0f} s), "
        f"Notion in step at {o.in_sync_s:.0f} s; settings {json.dumps(o.settings)}"
    )
    print(f"Dagster runs: {json.dumps(o.runs, sort_keys=True)}")
    if o.settings.get("notion_import"):
        print(f"`notion import` before dev started: {o.import_requests} requests (not counted)")
    print("requests by kind (429: replies refused by the rate limit, also in their kind):")
    for kind, count in sorted(o.kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        side = (
            "send log (left out)"
            if kind.endswith(ANALYTICS_DB)
            else "per signup"
            if kind in SIGNUP_KINDS
            else ""
            if kind == "429"
            else "per email"
        )
        print(f"  {kind:<32} {count:>5}  {side}")
    print(f"  {'total':<32} {o.total:>5}")
    print("timeline (requests per minute from the first signup):")
    for row in o.timeline:
        minute = row.pop("minute")
        print(f"  {minute:>3}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        row["minute"] = minute
    met_email = o.completed and o.per_email <= PER_EMAIL
    met_signup = o.completed and o.per_signup <= PER_SIGNUP
    print(
        f"{'ok  ' if met_email else 'MISS'} requests per email   {o.per_email:.3f} "
        f"({o.for_emails} / {o.emails}; target <= {PER_EMAIL})"
    )
    print(
        f"{'ok  ' if met_signup else 'MISS'} requests per signup  {o.per_signup:.3f} "
        f"({o.for_signups} / {o.signups}; target <= {PER_SIGNUP})"
    )
    print(
        f"     all requests per email {(o.total - o.send_log) / max(1, o.emails):.3f} "
        "(send log left out)"
    )
    return met_email and met_signup


def stop_cleanly(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # Run in the background (nohup ... &), SIGINT is ignored and SIGTERM would kill this
    # process alone: both must unwind, so that `running_dev` stops the servers it started.
    signal.signal(signal.SIGINT, stop_cleanly)
    signal.signal(signal.SIGTERM, stop_cleanly)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="signups (default 12)")
    parser.add_argument(
        "--sensor-interval", type=int, help="XMAS_SENSOR_INTERVAL_SECONDS (default: shipped)"
    )
    parser.add_argument(
        "--sync-delay", type=float, help="XMAS_NOTION_SYNC_DELAY_SECONDS (default: shipped)"
    )
    parser.add_argument("--no-import", action="store_true", help="no `notion import` first")
    parser.add_argument("--send-log", action="store_true", help="configure the Email Analytics DB")
    parser.add_argument("--timeout", type=float, default=1200.0, help="longest wait, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the XMAS_HOME folder")
    args = parser.parse_args(argv)
    absolute_pythonpath()
    home = Path(tempfile.mkdtemp(prefix="xmas-bench-notion-e2e-"))
    try:
        outcome = measure(args, home / "home")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    met = report(outcome)
    print(
        json.dumps(
            {
                "bench": "notion_e2e",
                "completed": outcome.completed,
                "signups": outcome.signups,
                "emails": outcome.emails,
                "emails_s": round(outcome.emails_s, 1),
                "in_sync_s": round(outcome.in_sync_s, 1),
                "per_email": round(outcome.per_email, 4),
                "per_signup": round(outcome.per_signup, 4),
                "for_emails": outcome.for_emails,
                "for_signups": outcome.for_signups,
                "send_log": outcome.send_log,
                "total": outcome.total,
                "kinds": outcome.kinds,
                "runs": outcome.runs,
                "import_requests": outcome.import_requests,
                "settings": outcome.settings,
            },
            sort_keys=True,
        )
    )
    if not outcome.completed:
        return 2
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
