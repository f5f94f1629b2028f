"""Benchmark: the Notion send path at Notion's real limit (target: at least 90% of the
throughput that 3 requests/s allows).

Starts the fake Notion API (tests' `FakeNotion`) with its rate limit on (3 requests/s, a
burst of 3, 429 + Retry-After beyond that), fills the Email Sequence DB with N contacts,
then times what a send run does against Notion: check the schema, load every sequence
(paginated, 100 a request), and `record_sent` for each email, through a `NotionStore`
paced at 3 requests/s. Prints requests per email (counted by the server), emails/s, and
emails/s as a share of the ceiling (3 requests/s divided by the unavoidable 1 request per
email). `--fault-rate` adds seeded 429/500/529/timeout faults to see the cost of retries.

Run: `.venv/bin/python bench/bench_notion.py [-n 150] [--fault-rate 0.0]`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

# The fake lives with the tests; make the repository importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmas_pipeline.adapters.notion.store import NotionStore  # noqa: E402
from xmas_pipeline.adapters.sql.store import SqlStore  # noqa: E402
from xmas_pipeline.core.campaign import load_campaign  # noqa: E402
from xmas_pipeline.core.ports import SentRecord  # noqa: E402
from xmas_pipeline_tests.fakes.notion_api import FakeNotion, FaultPlan  # noqa: E402
from xmas_pipeline_tests.fakes.notion_workspace import BASE_TIME, busos_workspace  # noqa: E402

NOTION_RATE = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--emails", type=int, default=150)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args()
    n = args.emails
    campaign = load_campaign()
    faults = FaultPlan(rate=args.fault_rate, seed=3, slow_s=2.0)
    with FakeNotion(rate_limit=NOTION_RATE, burst=3, faults=faults) as fake:
        ws = busos_workspace(fake)
        keys = [f"person{i}@example.com" for i in range(n)]
        for i, key in enumerate(keys):
            fake.add_row(
                ws.sequences,
                {
                    "Email": key,
                    "First Name": f"Person{i}",
                    "Campaign": campaign.notion_select,
                    "Segment": "URGENT",
                    "Signup Date": (BASE_TIME + timedelta(minutes=i)).isoformat(),
                },
            )
        fake.reset_counts()
        store = NotionStore(
            token=fake.token,
            contacts_db_id=ws.contacts,
            sequences_db_id=ws.sequences,
            base_url=fake.base_url,
            rate_per_s=NOTION_RATE,
            timeout_s=1.0,
            ledger=SqlStore(f"sqlite:///{tempfile.mkdtemp()}/ledger.db"),
        )
        started = time.perf_counter()
        frame = store.load_sequences(campaign)
        assert len(frame) == n
        for i, key in enumerate(keys):
            mid = f"{campaign.slug}/{key}/email-1"
            store.record_sent(
                campaign,
                SentRecord(
                    message_id=mid,
                    idempotency_key=mid,
                    contact_key=key,
                    kind="nurture",
                    step_id="email-1",
                    step_number=1,
                    due_at=BASE_TIME,
                    sent_at=BASE_TIME + timedelta(minutes=i),
                    provider_id=f"re_{i}",
                ),
            )
        elapsed = time.perf_counter() - started
        store.close()
        done = sum(1 for row in fake.rows(ws.sequences) if row["Email 1 Sent"])
        total = fake.total
        limited = fake.statuses[429] - fake.faults_injected["429"]

    per_email = total / n
    rate = n / elapsed
    ceiling = NOTION_RATE  # one request per email is the least a send can cost
    print(f"emails recorded:       {done} of {n}")
    print(
        f"requests to Notion:    {total} ({per_email:.3f} per email; schema check 4, "
        f"load {math.ceil(n / 100)})"
    )
    print(f"429s from the limit:   {limited}")
    print(f"elapsed:               {elapsed:.1f} s")
    print(f"emails/s:              {rate:.2f}")
    print(
        f"share of the ceiling:  {rate / ceiling:.1%} (ceiling {ceiling:.1f} emails/s "
        f"at {NOTION_RATE:.0f} requests/s)"
    )


if __name__ == "__main__":
    main()
