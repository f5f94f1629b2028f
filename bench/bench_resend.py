"""Benchmark: the Resend send path at Resend's real limit (2 requests/s per team).

Starts the fake Resend API (tests' `FakeResendAPI`) with its rate limit on (2 requests a
second, 429 + Retry-After beyond that) and sends N emails through `ResendSender` paced at
2 requests/s, in three scenarios:

- batch: batches of 100 (the default send path);
- batch + faults: the same with a seeded share of calls failing (500, 429, timeouts);
- single: one request per email (`use_batch=False`), on a smaller set.

For each it prints requests per email (counted by the server), emails/s, the 429s the
server answered, and checks that every email was delivered exactly once.

Run: `.venv/bin/python bench/bench_resend.py [-n 1000] [--single 20] [--fault-rate 0.2]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The fake lives with the tests; make the repository importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmas_pipeline.adapters.resend_sender import ResendSender  # noqa: E402
from xmas_pipeline.core.ports import OutgoingEmail  # noqa: E402
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake  # noqa: E402


@dataclass
class Outcome:
    name: str
    emails: int
    requests: int
    seconds: float
    sent: int
    retry: int
    rate_limited: int
    exactly_once: bool


def outgoing(n: int) -> list[OutgoingEmail]:
    emails = []
    for i in range(n):
        message_id = f"christmas-2025/person{i}@example.com/email-1"
        emails.append(
            OutgoingEmail(
                message_id=message_id,
                idempotency_key=message_id,
                to=f"person{i}@example.com",
                from_email="BusOS <hello@example.com>",
                subject="Your BusOS assessment results",
                html="<p>" + "Your results, explained. " * 60 + "</p>",
                text="Your results, explained. " * 60,
                tags={"campaign": "christmas-2025", "step": "email-1", "segment": "URGENT"},
                headers={
                    "List-Unsubscribe": f"<https://example.org/unsubscribe?token=t{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            )
        )
    return emails


def run(name: str, n: int, *, use_batch: bool, fault_rate: float, seed: int) -> Outcome:
    emails = outgoing(n)
    with running_fake(
        rate_limit=2,
        window_s=1.0,
        fault_rate=fault_rate,
        fault_kinds=("500", "429", "timeout"),
        seed=seed,
        hang_s=3.0,
    ) as fake:
        # A 2 s timeout (15 s in production) keeps the fault scenario short.
        with ResendSender(
            DEFAULT_API_KEY,
            base_url=fake.base_url,
            rate_per_s=2.0,
            timeout_s=2.0,
            use_batch=use_batch,
        ) as sender:
            started = time.perf_counter()
            results = sender.send(emails)
            seconds = time.perf_counter() - started
        deliveries = fake.deliveries()
        sent = sum(r.status == "sent" for r in results)
        return Outcome(
            name=name,
            emails=n,
            requests=fake.request_count,
            seconds=seconds,
            sent=sent,
            retry=sum(r.status == "retry" for r in results),
            rate_limited=fake.count(429, "rate_limit_exceeded"),
            exactly_once=all(count == 1 for count in deliveries.values())
            and len(deliveries) >= sent,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="emails in the batch scenarios")
    parser.add_argument("--single", type=int, default=20, help="emails sent one by one")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    outcomes = [
        run("batch", args.n, use_batch=True, fault_rate=0.0, seed=args.seed),
        run(
            f"batch + {args.fault_rate:.0%} faults",
            args.n,
            use_batch=True,
            fault_rate=args.fault_rate,
            seed=args.seed,
        ),
        run("single", args.single, use_batch=False, fault_rate=0.0, seed=args.seed),
    ]
    print("limit: 2 requests/s (client paces at 95% of it); batches of 100")
    header = (
        f"{'scenario':<20} {'emails':>6} {'requests':>8} {'req/email':>9} {'seconds':>8} "
        f"{'emails/s':>8} {'sent':>5} {'retry':>5} {'429s':>4} {'exactly once':>12}"
    )
    print(header)
    for o in outcomes:
        print(
            f"{o.name:<20} {o.emails:>6} {o.requests:>8} {o.requests / o.emails:>9.3f} "
            f"{o.seconds:>8.2f} {o.emails / o.seconds:>8.1f} {o.sent:>5} {o.retry:>5} "
            f"{o.rate_limited:>4} {'yes' if o.exactly_once else 'NO':>12}"
        )


if __name__ == "__main__":
    main()
