"""Benchmark: `due_emails` over 100,000 synthetic sequences (target: at most 1 s).

Times the whole computation the asset does after reading the store: the due rows
(`compute_due`) joined with each contact's fields for rendering (`plan_with_fields`).
Run: `.venv/bin/python bench/bench_due.py [sequences]`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.segments import classify_frame
from xmas_pipeline.core.send_plan import with_profile as plan_with_fields
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column


def synthetic(n: int, now: datetime, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    campaign = load_campaign()
    age = pd.to_timedelta(rng.uniform(0, 14 * 86400, n), unit="s")
    signup_at = pd.Timestamp(now) - age
    red = rng.integers(0, 4, n)
    orange = rng.integers(0, 4, n)
    frame = pd.DataFrame(
        {
            "contact_key": [f"person{i}@example.com" for i in range(n)],
            "first_name": "Pat",
            "assessment_score": rng.integers(0, 101, n),
            "red_systems": red,
            "orange_systems": orange,
            "revenue_leak_total": rng.integers(0, 20000, n),
            "segment": classify_frame(pd.Series(red), pd.Series(orange)),
            "signup_at": signup_at,
            "booked": rng.random(n) < 0.05,
            "unsubscribed": rng.random(n) < 0.01,
            "paused": rng.random(n) < 0.005,
        }
    )
    frame["email"] = frame["contact_key"]
    # Each sequence has sent every step that was due more than an hour ago.
    for step in campaign.steps:
        due = frame["signup_at"] + step.delay
        frame[sent_column(step.number)] = due.where(due < pd.Timestamp(now) - timedelta(hours=1))
    frame["completed"] = frame[sent_column(7)].notna()
    return normalise_sequences(frame, len(campaign.steps))


def store_load_seconds(sequences: pd.DataFrame, campaign_name: str = "") -> tuple[float, int]:
    """Also time `load_sequences` from a SQLite file holding the same state."""
    import tempfile

    from xmas_pipeline.adapters.sql_store import SqlStore, messages
    from xmas_pipeline.adapters.sql_store import sequences as seq_table

    campaign = load_campaign()
    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore(f"sqlite:///{folder}/bench.db")
        store.prepare(campaign)
        now = datetime.now(UTC)
        rows = sequences.assign(
            campaign=campaign.slug,
            signup_day=sequences["signup_at"].dt.strftime("%Y-%m-%d"),
            source="bench",
            exit_reason="",
            delivery_state="",
            updated_at=now,
        )
        columns = [c.name for c in seq_table.columns]
        records = rows.reindex(columns=columns).fillna(
            {"business_name": "", "weakest_system_1": "", "weakest_system_2": ""}
        )
        sent_rows = []
        for step in campaign.steps:
            done = rows[rows[sent_column(step.number)].notna()]
            for key, at in zip(done["contact_key"], done[sent_column(step.number)], strict=True):
                mid = f"{campaign.slug}/{key}/email-{step.number}"
                sent_rows.append(
                    {
                        "idempotency_key": mid,
                        "campaign": campaign.slug,
                        "message_id": mid,
                        "contact_key": key,
                        "kind": "nurture",
                        "step_id": f"email-{step.number}",
                        "step_number": step.number,
                        "segment": "",
                        "booking_uid": "",
                        "due_at": at.floor("us").to_pydatetime(),
                        "due_day": at.strftime("%Y-%m-%d"),
                        "sent_at": at.floor("us").to_pydatetime(),
                        "provider_id": "",
                        "forced": False,
                    }
                )
        with store.engine.begin() as conn:
            conn.execute(seq_table.insert(), records.to_dict("records"))
            conn.execute(messages.insert(), sent_rows)
        start = time.perf_counter()
        loaded = store.load_sequences(campaign)
        elapsed = time.perf_counter() - start
        store.dispose()
    return elapsed, len(loaded)


def main() -> None:
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    n = int(numbers[0]) if numbers else 100_000
    campaign = load_campaign()
    now = datetime.now(UTC)
    sequences = synthetic(n, now)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        due = compute_due(sequences, campaign, now)
        plan = plan_with_fields(due, sequences)
        timings.append(time.perf_counter() - start)
    print(
        f"due_emails over {n:,} sequences: best {min(timings) * 1000:.0f} ms, "
        f"median {sorted(timings)[2] * 1000:.0f} ms; {len(plan):,} rows due "
        f"({(plan['action'] == 'send').sum():,} to send); target <= 1000 ms"
    )
    if "--with-store" in sys.argv:
        seconds, rows = store_load_seconds(sequences)
        print(f"SqlStore.load_sequences (SQLite) of {rows:,} sequences: {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
