"""Benchmark: what the rendering limits and the watched child process cost a send.

Sends N welcome emails (`services.sending.deliver`, the real send path) from an SQLite
store in a temp folder to a sender that accepts at once (so only our own work is timed),
and times the rendering of the same N messages three ways: in this process with the
core's limits (what the send path did before, plus the limits' hooks), in the watched
child (`services.rendering.render_rows`, with the link check), and the whole `deliver`.

Run: `.venv/bin/python bench/bench_render.py [-n 1000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

# The store helpers live with the tests; make the repository importable as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmas_pipeline.adapters.sql.store import SqlStore  # noqa: E402
from xmas_pipeline.core.campaign import load_campaign  # noqa: E402
from xmas_pipeline.core.context import message_context  # noqa: E402
from xmas_pipeline.core.due import compute_due  # noqa: E402
from xmas_pipeline.core.ports import OutgoingEmail, SendResult  # noqa: E402
from xmas_pipeline.core.render import Renderer, load_template_dir  # noqa: E402
from xmas_pipeline.core.send_plan import with_profile  # noqa: E402
from xmas_pipeline.services.rendering import RenderJob, render_rows  # noqa: E402
from xmas_pipeline.services.sending import Envelope, deliver, template_for  # noqa: E402
from xmas_pipeline_tests.support.store_contract import event  # noqa: E402

UNSUBSCRIBE = "https://intake.example.com/unsubscribe?token=bench"
POSTAL = "BusOS, 100 Sample Street, Toronto"


class AcceptAll:
    """A sender that takes every email at once."""

    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        return [
            SendResult(e.message_id, e.idempotency_key, "sent", provider_id=f"p-{i}")
            for i, e in enumerate(emails)
        ]


def seconds(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="messages")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    campaign = load_campaign()
    templates = load_template_dir()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'state.db'}"
        signups = [
            event(f"p{i}@example.com", at=now, red_systems=i % 4, business_name=f"Shop {i}")
            for i in range(args.n)
        ]

        def context_for(row: Any) -> dict[str, Any]:
            return message_context(row, campaign, UNSUBSCRIBE, POSTAL)

        def plan(store: SqlStore) -> pd.DataFrame:
            sequences = store.load_sequences(campaign)
            return with_profile(compute_due(sequences, campaign, now), sequences)

        store = SqlStore(url)
        store.upsert_signups(campaign, signups)
        rows = plan(store).to_dict("records")
        renderer = Renderer(templates)

        def in_process() -> None:
            for row in rows:
                base = template_for(campaign, row["kind"], int(row["step_number"]))
                renderer.render(base, row["segment"], context_for(row))

        def job(row: Any) -> RenderJob:
            base = template_for(campaign, row["kind"], int(row["step_number"]))
            return RenderJob(base, row["segment"], context_for(row))

        def supervised() -> None:
            out = render_rows(Renderer(templates), campaign, rows, job)
            assert not [r for r in out if isinstance(r, Exception)], out[:1]

        local = seconds(in_process, args.repeat)
        child = seconds(supervised, args.repeat)

        def send() -> None:
            # A fresh store each time, so every run sends all N.
            fresh = SqlStore(f"sqlite:///{Path(tempfile.mkdtemp(dir=folder)) / 'state.db'}")
            fresh.upsert_signups(campaign, signups)
            due = plan(fresh)
            started = time.perf_counter()
            report = deliver(
                store=fresh,
                sender=AcceptAll(),
                renderer=Renderer(templates),
                campaign=campaign,
                plan=due,
                context_for=context_for,
                envelope=Envelope(from_email="BusOS <hello@example.com>"),
            )
            sends.append(time.perf_counter() - started)
            assert len(report.sent) == args.n, report.problems()

        sends: list[float] = []
        for _ in range(args.repeat):
            send()
        whole = statistics.median(sends)

    print(f"{args.n} messages (median of {args.repeat})")
    print(f"render in process, with the limits: {local:.3f} s ({local / args.n * 1e3:.2f} ms each)")
    print(f"render in the watched child, links checked: {child:.3f} s")
    print(f"the child's overhead: {child - local:+.3f} s ({(child / local - 1) * 100:+.0f}%)")
    print(f"deliver (render, send, record): {whole:.3f} s")


if __name__ == "__main__":
    main()
