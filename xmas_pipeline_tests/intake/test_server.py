"""The intake under a real uvicorn process: concurrent load, and a crash in the middle of it."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import httpx
import pytest

from xmas_pipeline_tests.support.intake_process import IntakeProcess

pytestmark = pytest.mark.slow

TOKEN = "load-test-signup-token"
URL_PATH = "/webhook/christmas-signup"


def server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "CALCOM_", "RESEND_"))}
    # The load comes from one address: no rate limits (test_signup_limits*.py).
    env.update(
        XMAS_HOME=str(home),
        XMAS_SIGNUP_TOKEN=TOKEN,
        XMAS_SIGNUP_RATE_PER_IP="off",
        XMAS_SIGNUP_RATE_PER_EMAIL="off",
    )
    return env


def body_for(i: int) -> bytes:
    signup = {
        "email": f"load-{i}@example.com",
        "first_name": f"Zoë {i}",
        "assessment_score": i % 101,
        "red_systems": i % 4,
        "orange_systems": i % 3,
    }
    return json.dumps(signup, ensure_ascii=False).encode()


def stored_files(home: Path) -> dict[str, list[bytes]]:
    """Every inbox signup file by email; each file must parse (no partial writes)."""
    found: dict[str, list[bytes]] = {}
    for path in (home / "inbox" / "signups").glob("*/*.json"):
        raw = path.read_bytes()
        found.setdefault(json.loads(raw)["email"], []).append(raw)
    return found


async def post_all(
    base_url: str,
    indices: list[int],
    concurrency: int,
    acked: dict[int, bytes],
    failed: list[int],
    stop_after_acks: int | None = None,
    on_threshold: asyncio.Event | None = None,
) -> None:
    """Post each index's body with `concurrency` workers; record 202s and failures."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in indices:
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                if on_threshold is not None and on_threshold.is_set():
                    return
                i = queue.get_nowait()
                try:
                    response = await client.post(URL_PATH, content=body_for(i), headers=headers)
                except httpx.TransportError:
                    failed.append(i)
                    continue
                if response.status_code == 202:
                    acked[i] = body_for(i)
                else:
                    failed.append(i)
                if stop_after_acks is not None and len(acked) >= stop_after_acks:
                    assert on_threshold is not None
                    on_threshold.set()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def test_2000_signups_at_concurrency_50(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "server.log"
    acked: dict[int, bytes] = {}
    failed: list[int] = []
    with IntakeProcess(env=server_env(home), log_path=log) as server:
        asyncio.run(post_all(server.url, list(range(2000)), 50, acked, failed))
    assert failed == []
    assert len(acked) == 2000
    files = stored_files(home)
    assert len(files) == 2000
    for i, body in acked.items():
        # Exactly one file per signup, holding exactly the bytes that were posted.
        assert files[f"load-{i}@example.com"] == [body]
    assert list((home / "inbox" / ".tmp").iterdir()) == []
    text = log.read_text()
    assert text.count("accepted signups signups/") == 2000
    assert TOKEN not in text


def test_kill_mid_load_loses_no_acknowledged_signup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "server.log"
    acked: dict[int, bytes] = {}
    failed: list[int] = []
    server = IntakeProcess(env=server_env(home), log_path=log).start()
    try:

        async def load_then_crash() -> None:
            threshold = asyncio.Event()
            load = asyncio.create_task(
                post_all(server.url, list(range(5000)), 32, acked, failed, 400, threshold)
            )
            await threshold.wait()
            server.kill()  # SIGKILL to the process group while requests are in flight
            await load

        asyncio.run(load_then_crash())
        assert 400 <= len(acked) < 5000
        # The same inbox, a fresh process: acknowledged work survived, new work goes on.
        server.start()
        after: dict[int, bytes] = {}
        asyncio.run(post_all(server.url, list(range(5000, 5200)), 20, after, failed))
        assert len(after) == 200
    finally:
        server.stop()
    files = stored_files(home)
    for i, body in {**acked, **after}.items():
        assert files.get(f"load-{i}@example.com") == [body], f"signup {i} lost or doubled"
    # Unacknowledged requests may or may not have landed, but never twice.
    counts = Counter({email: len(bodies) for email, bodies in files.items()})
    assert max(counts.values()) == 1
    assert len(files) >= len(acked) + len(after)
