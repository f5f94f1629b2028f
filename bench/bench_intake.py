"""Benchmark: accepted signups per second through the real intake, durable writes on.

Starts `python -m xmas_pipeline.intake.server` (uvicorn, one process) on a loopback
port with a fresh inbox, posts N signups at concurrency C over keep-alive connections (a
lean asyncio HTTP/1.1 client by default, `--client httpx` for httpx), and prints accepted/s
plus p50/p90/p99 latency. Every 202 means the file was fsynced and renamed into place;
the script checks that the inbox holds exactly N files afterwards. The load generator
shares the machine with the server, so the figure is a floor, not a ceiling.

Run: `.venv/bin/python bench/bench_intake.py [-n 10000] [-c 50] [--client raw|httpx]
[--home DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from xmas_pipeline_tests.support.intake_process import IntakeProcess

TOKEN = "bench-token"
Result = tuple[list[float], int]  # latencies (s) of the 202s, count of anything else


def body_for(i: int) -> bytes:
    return json.dumps(
        {
            "email": f"bench-{i}@example.com",
            "first_name": "Pat",
            "business_name": "Bench & Co",
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
    ).encode()


def request_bytes(i: int) -> bytes:
    body = body_for(i)
    head = (
        "POST /webhook/christmas-signup HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def raw_load(host: str, port: int, start: int, count: int, concurrency: int) -> Result:
    """A lean keep-alive HTTP/1.1 client: measures the server, not the client library."""
    next_index = iter(range(start, start + count))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_index:
                began = time.perf_counter()
                writer.write(request_bytes(i))
                await writer.drain()
                status = await _read_status(reader)
                if status == 202:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def httpx_load(url: str, start: int, count: int, concurrency: int) -> Result:
    """The same load through httpx (its connection pool costs CPU at high concurrency)."""
    next_index = iter(range(start, start + count))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            for i in next_index:
                began = time.perf_counter()
                try:
                    response = await client.post(
                        "/webhook/christmas-signup", content=body_for(i), headers=headers
                    )
                except httpx.TransportError:
                    errors += 1
                    continue
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=10_000)
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--home", help="data folder for the inbox (default: a temporary one)")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="xmas-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "CALCOM_", "RESEND_"))}
    # The load comes from one address: the signup rate limits would refuse nearly all of it.
    env.update(
        XMAS_HOME=str(home),
        XMAS_SIGNUP_TOKEN=TOKEN,
        XMAS_SIGNUP_RATE_PER_IP="off",
        XMAS_SIGNUP_RATE_PER_EMAIL="off",
    )
    server = IntakeProcess(env=env)
    try:
        server.start()

        def load(start: int, count: int) -> Result:
            if args.client == "httpx":
                return asyncio.run(httpx_load(server.url, start, count, args.concurrency))
            return asyncio.run(raw_load(server.host, server.port, start, count, args.concurrency))

        load(0, args.warmup)
        began = time.perf_counter()
        latencies, errors = load(args.warmup, args.requests)
        elapsed = time.perf_counter() - began
    finally:
        server.stop()
    files = sum(1 for _ in (home / "inbox" / "signups").glob("*/*.json"))
    if not args.home:
        shutil.rmtree(home, ignore_errors=True)

    latencies.sort()
    ms = [v * 1000 for v in latencies]
    print(
        f"requests      {args.requests} (+{args.warmup} warm-up), "
        f"concurrency {args.concurrency}, client {args.client}"
    )
    print(f"accepted      {len(latencies)}   errors {errors}   files {files}")
    print(f"elapsed       {elapsed:.2f} s")
    print(f"accepted/s    {len(latencies) / elapsed:,.0f}")
    if ms:
        print(
            f"latency ms    p50 {percentile(ms, 0.50):.1f}   p90 {percentile(ms, 0.90):.1f}   "
            f"p99 {percentile(ms, 0.99):.1f}   max {ms[-1]:.1f}   mean {statistics.fmean(ms):.1f}"
        )
    expected = args.requests + args.warmup
    if errors or files != expected:
        print(f"FAILED: expected {expected} files and no errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
