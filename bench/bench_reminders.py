"""Benchmark: booking state and due reminders at campaign scale.

Folds N synthetic Cal.com events (creations, a tenth rescheduled, a tenth cancelled) into
booking state, then computes the reminders due now with a third of the offsets already
sent. Prints the timings; the send path's part (`compute_due_reminders`) should stay well
under a second for 10,000 bookings.
Run: `.venv/bin/python bench/bench_reminders.py [bookings]`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from xmas_pipeline.core.booking_state import bookings_frame, fold_booking_events
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline.core.reminders import compute_due_reminders


def synthetic_events(n: int, now: datetime, seed: int = 11) -> list[BookingEvent]:
    rng = np.random.default_rng(seed)
    events: list[BookingEvent] = []
    for i in range(n):
        booked = now - timedelta(hours=float(rng.uniform(0, 96)))
        start = booked + timedelta(hours=float(rng.uniform(1, 120)))
        key = f"person{i}@example.com"
        common = {"contact_key": key, "email": key, "name": "Pat Doe", "time_zone": "UTC"}
        events.append(
            BookingEvent(
                uid=f"bk{i}",
                kind="created",
                start=start,
                event_at=booked,
                booked_at=booked,
                **common,
            )
        )
        if i % 10 == 1:
            moved = booked + timedelta(minutes=30)
            events.append(
                BookingEvent(
                    uid=f"bk{i}r",
                    kind="rescheduled",
                    start=start + timedelta(days=1),
                    previous_uid=f"bk{i}",
                    event_at=moved,
                    booked_at=moved,
                    **common,
                )
            )
        elif i % 10 == 2:
            events.append(
                BookingEvent(
                    uid=f"bk{i}",
                    kind="cancelled",
                    start=start,
                    event_at=booked + timedelta(minutes=5),
                    **common,
                )
            )
    return events


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    campaign = load_campaign()
    now = datetime(2025, 12, 10, 12, 0, tzinfo=UTC)
    events = synthetic_events(n, now)

    started = time.perf_counter()
    states = fold_booking_events(events)
    frame = bookings_frame(states)
    fold_s = time.perf_counter() - started

    active = frame[frame["status"] == "active"]
    sent = pd.DataFrame(
        {"booking_uid": active["booking_uid"].iloc[::3], "step_number": 1, "status": "sent"}
    )
    started = time.perf_counter()
    due = compute_due_reminders(frame, sent, campaign, now)
    due_s = time.perf_counter() - started

    print(f"events folded:        {len(events):>8} in {fold_s * 1000:8.1f} ms")
    print(f"bookings:             {len(frame):>8} ({len(active)} active)")
    print(f"due reminder rows:    {len(due):>8} in {due_s * 1000:8.1f} ms")
    print("by action:", due["action"].value_counts().to_dict())


if __name__ == "__main__":
    main()
