"""Benchmark: what planning the sends costs tracks what is due, not how many people or
campaigns there are (targets: five campaigns of 10,000 sequences with nothing due, planned
together, at most 1.5x one campaign of 10,000; with 1,000 due in each, at most 1.2x one
campaign with 5,000 due).

Each case is timed side by side in this one run: the two plans in turn, `--runs` times,
and the median of each and of their ratio pair by pair. A plan is `services.planning`'s
`due_plans` over a SQLite store (or PostgreSQL with `--postgres URL`): the store's read of
what may be due, and the plan computed from it. `--full` also times the plan from every
sequence (`load_state`, how a send run planned before `next_due_at`), for comparison.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_campaigns.py [--sequences 10000] [--runs 9]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import messages, sequences
from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.due import earliest_next_due
from xmas_pipeline.core.send_plan import plan_due
from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.services.planning import due_plans, load_state

# 10:00 in Toronto, the shipped campaign's send window open.
NOW = datetime(2025, 12, 10, 15, 0, tzinfo=UTC)


def campaign(slug: str) -> Campaign:
    return load_campaign().model_copy(update={"slug": slug, "name": slug})


def populate(store: SqlStore, camp: Campaign, people: int, due: int) -> None:
    """`people` sequences, each sent its welcome: `due` of them signed up 25 hours ago
    (email 2 is due), the rest an hour ago (nothing due for 23 hours)."""
    events = []
    for n in range(people):
        at = NOW - (timedelta(hours=25) if n < due else timedelta(hours=1))
        signup = Signup.model_validate(
            {
                "email": f"p{n}@{camp.slug}.example.com",
                "first_name": "Pat",
                "red_systems": 1,
                "assessment_score": 40,
            }
        )
        events.append(SignupEvent(signup=signup, received_at=at, source=f"bench/{n}"))
    store.upsert_signups(camp, events)
    # The welcomes as `record_sent` writes them, in bulk (the bench times planning only).
    step = camp.steps[0]
    step_id = f"email-{step.number}"
    with store.engine.begin() as conn:
        rows = conn.execute(
            sa.select(sequences.c.contact_key, sequences.c.signup_at).where(
                sequences.c.campaign == camp.slug
            )
        ).all()
        conn.execute(
            messages.insert(),
            [
                {
                    "idempotency_key": f"{camp.slug}/{key}/{step_id}",
                    "campaign": camp.slug,
                    "message_id": f"{camp.slug}/{key}/{step_id}",
                    "contact_key": key,
                    "kind": "nurture",
                    "step_id": step_id,
                    "step_number": step.number,
                    "segment": "URGENT",
                    "booking_uid": "",
                    "due_at": at,
                    "due_day": at.strftime("%Y-%m-%d"),
                    "sent_at": at,
                    "provider_id": f"bench-{key}",
                    "forced": False,
                }
                for key, at in rows
            ],
        )
        for at in {at for _, at in rows}:  # two signup times: one update each
            moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            conn.execute(
                sequences.update()
                .where(sequences.c.campaign == camp.slug, sequences.c.signup_at == at)
                .values(next_due_at=earliest_next_due(moment, [step.number], camp))
            )


def side_by_side(
    a: Callable[[], int], b: Callable[[], int], runs: int
) -> tuple[float, float, float, int, int]:
    a(), b()  # warm-up: imports, caches, the store's schema check
    ta, tb, ratios = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        due_a = a()
        t1 = time.perf_counter()
        due_b = b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), due_a, due_b


def planner(store: SqlStore, camps: list[Campaign]) -> Callable[[], int]:
    def plan() -> int:
        plans = due_plans(store, camps, NOW)
        return sum(len(p) for p, _ in plans.values())

    return plan


def full_planner(store: SqlStore, camps: list[Campaign]) -> Callable[[], int]:
    def plan() -> int:
        return sum(len(plan_due(load_state(store, c), c, NOW)[0]) for c in camps)

    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=10_000, help="per campaign")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--postgres", help="a PostgreSQL URL (an empty database)")
    parser.add_argument("--full", action="store_true", help="also time planning from everything")
    args = parser.parse_args()
    n = args.sequences
    folder = tempfile.mkdtemp(prefix="bench-campaigns-")
    store = SqlStore(args.postgres or f"sqlite:///{folder}/state.db")
    five_idle = [campaign(f"idle-{i}") for i in range(1, 6)]
    one_idle = [campaign("idle-one")]
    five_busy = [campaign(f"busy-{i}") for i in range(1, 6)]
    one_busy = [campaign("busy-one")]
    started = time.perf_counter()
    for c in five_idle + one_idle:
        populate(store, c, n, 0)
    for c in five_busy:
        populate(store, c, n, n // 10)
    populate(store, one_busy[0], n, n // 2)
    print(
        f"store: {store.url.split(':')[0]}, {len(five_idle) * 2 + 2} campaigns of {n:,} "
        f"sequences written in {time.perf_counter() - started:.1f} s; {args.runs} runs each"
    )

    cases = [
        ("nothing due: 5 campaigns vs 1", five_idle, one_idle, 1.5),
        (f"{n // 10:,} due in each of 5 vs {n // 2:,} due in 1", five_busy, one_busy, 1.2),
    ]
    for title, five, one, target in cases:
        a, b, ratio, due_a, due_b = side_by_side(
            planner(store, five), planner(store, one), args.runs
        )
        verdict = "within" if ratio <= target else "OVER"
        print(
            f"{title}: {a * 1000:.1f} ms vs {b * 1000:.1f} ms (due {due_a:,} vs {due_b:,}); "
            f"ratio {ratio:.2f} ({verdict} the target {target}x)"
        )
        if args.full:
            fa, fb, fratio, _, _ = side_by_side(
                full_planner(store, five), full_planner(store, one), max(3, args.runs // 3)
            )
            print(
                f"  planned from every sequence: {fa * 1000:.1f} ms vs {fb * 1000:.1f} ms, "
                f"ratio {fratio:.2f}"
            )
    store.dispose()


if __name__ == "__main__":
    main()
