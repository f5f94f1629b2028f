"""Benchmark: the UI's cold start with N campaigns (target: five at most 1.3x one).

Starts the real `dagster-webserver` on the code location (`xmas_pipeline.definitions`,
loaded by its own code server process, as `dagster dev` does) over a campaigns folder of
N copies of the shipped campaign, and waits until the UI answers the query its asset
graph opens with, listing every asset of every campaign. Prints the seconds from start to
that answer, then stops the webserver's whole process group.

Side by side, as whole processes (the figure the README quotes):
`farm-bench -n 5 --timeout 900 --vs '.venv/bin/python bench/bench_ui_cold_start.py
--campaigns 1' -- .venv/bin/python bench/bench_ui_cold_start.py --campaigns 5`
(run from the repository root).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_campaign_count import campaigns_folder  # noqa: E402

# What the asset graph asks first: every asset node and its key.
ASSET_NODES = "{ assetNodes { assetKey { path } } }"
# Global assets outside any campaign's prefix (signups, sequences, bookings, ...): at
# least this many, and five per campaign (templates, due_emails, deliveries, funnel,
# send_switch).
PER_CAMPAIGN = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def campaign_assets(body: dict, slugs: list[str]) -> int:
    """How many assets of the asset graph's answer sit under a campaign's prefix."""
    prefixes = {slug.replace("-", "_") for slug in slugs}
    nodes = body.get("data", {}).get("assetNodes") or []
    return sum(1 for node in nodes if node["assetKey"]["path"][0] in prefixes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaigns", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        root = Path(tmp)
        folder = campaigns_folder(root / "campaigns", args.campaigns)
        slugs = sorted(p.name for p in folder.iterdir())
        (root / "dagster").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(root / "dagster"),
            XMAS_HOME=str(root / "home"),
            XMAS_CAMPAIGNS_DIR=str(folder),
            PYTHONPATH=str(Path(__file__).resolve().parents[1]),
        )
        port = free_port()
        webserver = Path(sys.executable).parent / "dagster-webserver"
        process = subprocess.Popen(
            [str(webserver), "-m", "xmas_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its code server joins its group: stopped together
        )
        try:
            want = PER_CAMPAIGN * args.campaigns
            while True:
                if time.monotonic() - started > args.deadline:
                    raise SystemExit(f"the UI did not list {want} campaign assets in time")
                if process.poll() is not None:
                    raise SystemExit(f"dagster-webserver exited with {process.returncode}")
                with suppress(httpx.HTTPError, ValueError):
                    answer = httpx.post(
                        f"http://127.0.0.1:{port}/graphql",
                        json={"query": ASSET_NODES},
                        timeout=30,
                    )
                    if answer.status_code == 200 and campaign_assets(answer.json(), slugs) >= want:
                        break
                time.sleep(0.1)
            ready = time.monotonic() - started
            print(f"campaigns: {args.campaigns}; UI listed the asset graph after {ready:.2f} s")
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


if __name__ == "__main__":
    main()
