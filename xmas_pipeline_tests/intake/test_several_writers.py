"""Several intake processes writing one inbox: nothing lost, nothing doubled, nothing torn.

Two real servers, each `xmas-pipeline serve --workers 2` (so four writer processes), share
one inbox folder, the way several hosts share a bucket or a network folder. Signups are
posted to both at once; one server is killed outright in the middle of the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from xmas_pipeline_tests.support.intake_process import IntakeProcess, live_processes

pytestmark = pytest.mark.slow

TOKEN = "several-writers-token"
URL_PATH = "/webhook/christmas-signup"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
TOTAL = 800  # signups posted in the kill test


@dataclass
class Ledger:
    """What the clients saw: the event id of each acknowledged signup, and the rest."""

    acked: dict[int, str] = field(default_factory=dict)
    unanswered: list[int] = field(default_factory=list)  # no 202: cut off, refused, or 503
    attempts: Counter[int] = field(default_factory=Counter)


def body_for(i: int) -> bytes:
    signup = {
        "email": f"writer-{i}@example.com",
        "first_name": f"Zoë {i}",
        "assessment_score": i % 101,
        "red_systems": i % 4,
    }
    return json.dumps(signup, ensure_ascii=False).encode()


def index_of(raw: bytes) -> int:
    return int(json.loads(raw)["email"].removeprefix("writer-").split("@")[0])


def server_env(tmp_path: Path, name: str) -> dict[str, str]:
    """A home of its own per server, one inbox for all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "CALCOM_", "RESEND_"))}
    env.update(
        XMAS_HOME=str(tmp_path / name),
        XMAS_INBOX_URL=str(tmp_path / "inbox"),
        XMAS_SIGNUP_TOKEN=TOKEN,
        # The load comes from one address: no rate limits (test_signup_limits*.py).
        XMAS_SIGNUP_RATE_PER_IP="off",
        XMAS_SIGNUP_RATE_PER_EMAIL="off",
    )
    return env


def new_server(tmp_path: Path, name: str, workers: int | None = 2) -> IntakeProcess:
    """`xmas-pipeline serve --workers N`, or with `workers=None` the single-process server."""
    log = tmp_path / f"{name}.log"
    return IntakeProcess(env=server_env(tmp_path, name), log_path=log, workers=workers)


def wait_workers_ready(server: IntakeProcess, within: float = 20.0) -> None:
    """/healthz answers once one worker is up; wait for all of them (their startup lines)."""
    assert server.log_path is not None and server.workers is not None
    deadline = time.monotonic() + within
    while server.log_path.read_text().count("Application startup complete") < server.workers:
        assert time.monotonic() < deadline, "the workers did not all start"
        time.sleep(0.05)


@contextmanager
def running(*servers: IntakeProcess) -> Iterator[None]:
    """Start the servers side by side; stop every one of them, whatever happens."""
    with ThreadPoolExecutor(len(servers)) as pool:
        try:
            list(pool.map(lambda server: server.start(), servers))
            yield
        finally:
            # `stop` returns only once the process has exited, and never raises.
            list(pool.map(lambda server: server.stop(), servers))


def stored(inbox: Path) -> dict[str, bytes]:
    """Every signup file, by event id (its name); each one must be whole JSON."""
    found: dict[str, bytes] = {}
    for path in (inbox / "signups").glob("*/*.json"):
        raw = path.read_bytes()
        json.loads(raw)  # a torn file would not parse
        found[path.stem] = raw
    return found


async def post_signups(
    urls: list[str],
    indices: list[int],
    ledger: Ledger,
    concurrency: int = 32,
    acked_enough: asyncio.Event | None = None,
    enough: int = 0,
) -> None:
    """Post each signup to `urls[i % len(urls)]`, `concurrency` at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in indices:
        queue.put_nowait(i)
    async with httpx.AsyncClient(timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                ledger.attempts[i] += 1
                try:
                    url = urls[i % len(urls)] + URL_PATH
                    response = await client.post(url, content=body_for(i), headers=HEADERS)
                except httpx.TransportError:
                    ledger.unanswered.append(i)
                    continue
                if response.status_code == 202:
                    ledger.acked[i] = response.json()["event_id"]
                else:
                    ledger.unanswered.append(i)
                if acked_enough is not None and len(ledger.acked) >= enough:
                    acked_enough.set()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def wait_gone(pids: list[int], within: float = 5.0) -> list[int]:
    """Those of `pids` still alive after `within` seconds (none, normally)."""
    deadline = time.monotonic() + within
    while (alive := sorted(set(pids) & set(live_processes()))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_two_servers_store_every_signup_once(tmp_path: Path) -> None:
    first, second = new_server(tmp_path, "first"), new_server(tmp_path, "second")
    ledger = Ledger()
    with running(first, second):
        # A leader and at least its two workers each.
        assert len(first.group_alive()) >= 3 and len(second.group_alive()) >= 3
        asyncio.run(post_signups([first.url, second.url], list(range(400)), ledger))
    assert ledger.unanswered == []
    files = stored(tmp_path / "inbox")
    event_ids = list(ledger.acked.values())
    assert len(event_ids) == 400 and len(set(event_ids)) == 400
    # Every 202 has exactly its file, and there is no file without a 202.
    assert set(files) == set(event_ids)
    for i, event_id in ledger.acked.items():
        assert files[event_id] == body_for(i)
    assert list((tmp_path / "inbox" / ".tmp").iterdir()) == []
    for name in ("first", "second"):
        # Both servers took their share (every other signup).
        assert (tmp_path / f"{name}.log").read_text().count("accepted signups ") == 200


def test_a_server_killed_mid_load_loses_no_acknowledged_signup(tmp_path: Path) -> None:
    # The killed one runs two workers; the other one is the single-process server.
    doomed = new_server(tmp_path, "doomed")
    survivor = new_server(tmp_path, "survivor", workers=None)
    urls = [doomed.url, survivor.url]
    ledger = Ledger()
    with running(doomed, survivor):
        # SIGKILL of the group reaches every process the server started: none left it.
        wait_workers_ready(doomed)
        started = doomed.descendants()
        assert len(started) >= 2 and set(started) <= set(doomed.group_alive())

        async def load_then_kill() -> None:
            threshold = asyncio.Event()
            load = asyncio.create_task(
                post_signups(urls, list(range(TOTAL)), ledger, acked_enough=threshold, enough=200)
            )
            await threshold.wait()
            doomed.kill()  # SIGKILL to its process group while requests are in flight
            await load

        asyncio.run(load_then_kill())
        assert wait_gone(started) == [], "a worker outlived SIGKILL of its group"
        first_try = dict(ledger.acked)
        assert 200 <= len(first_try) < TOTAL and ledger.unanswered

        # The client retries what got no answer, once the server is back.
        doomed.start()
        for _ in range(3):
            retry, ledger.unanswered = ledger.unanswered, []
            asyncio.run(post_signups(urls, retry, ledger, concurrency=16))
        assert ledger.unanswered == []

    assert set(ledger.acked) == set(range(TOTAL))
    files = stored(tmp_path / "inbox")
    by_signup: dict[int, list[str]] = {}
    for event_id, raw in files.items():
        assert raw == body_for(index_of(raw)), f"{event_id} is not what was posted"
        by_signup.setdefault(index_of(raw), []).append(event_id)
    for i in range(TOTAL):
        if i in first_try:
            # Acknowledged at once: exactly one file, the one the 202 named.
            assert by_signup[i] == [first_try[i]], f"signup {i} lost or doubled"
        else:
            # Retried: the acknowledged file is there; an unanswered attempt may have
            # landed as well (ingestion dedupes by contact), but no more than were made.
            assert ledger.acked[i] in by_signup[i]
            assert len(by_signup[i]) <= ledger.attempts[i]


def test_sigterm_to_the_server_stops_every_worker(tmp_path: Path) -> None:
    server = new_server(tmp_path, "server")
    with running(server):
        wait_workers_ready(server)
        started = server.descendants()
        assert len(started) >= 2 and set(started) <= set(server.group_alive())
        # What `kill PID`, systemd or `docker stop` do: the leader alone gets SIGTERM.
        server.signal_leader(signal.SIGTERM)
        assert server.proc is not None
        assert server.proc.wait(timeout=15) == 0
        assert wait_gone(started) == []
    log = (tmp_path / "server.log").read_text()
    assert log.count("Finished server process") == 2  # each worker shut down cleanly
