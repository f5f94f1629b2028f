"""CRITICAL signups are announced to the alert webhook once each, by the pipeline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline_tests.support.pipeline_env import make_env, materializations, signup, today


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_next = 0


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.fail_next:
                state.fail_next -= 1
                self.send_response(500)
                self.end_headers()
                return
            state.bodies.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_port}/api/webhooks/123/secret-token"
    server.shutdown()
    server.server_close()


def test_each_critical_signup_is_announced_once(tmp_path: Path, hook: tuple[Hook, str]) -> None:
    state, url = hook
    env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=url)
    env.drop_signup(signup("crit1@x.com", red=2, first_name="Ann"))
    env.drop_signup(signup("crit2@x.com", red=3, first_name="Bob"))
    env.drop_signup(signup("urgent@x.com", red=1))
    with dg.instance_for_test() as instance:
        state.fail_next = 1  # the first alert fails: reported, and retried next time
        first = env.ingest(today(), instance)
        meta = materializations(first, "email_sequences")[0]
        assert meta["critical alerts sent"] == 1 and meta["critical alerts failed"] == 1
        second = env.ingest(today(), instance)
        meta = materializations(second, "email_sequences")[0]
        assert meta["critical alerts sent"] == 1 and meta["critical alerts failed"] == 0
        third = env.ingest(today(), instance)
        assert materializations(third, "email_sequences")[0]["critical alerts sent"] == 0
    texts = sorted(body["content"] for body in state.bodies)
    assert len(texts) == 2
    assert "Ann" in texts[0] and "Bob" in texts[1]
    assert all(body["text"] == body["content"] for body in state.bodies)


def test_alert_url_never_reaches_metadata_or_logs(tmp_path: Path, hook: tuple[Hook, str]) -> None:
    state, url = hook
    env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=url)
    env.drop_signup(signup("crit@x.com", red=2))
    state.fail_next = 1
    with dg.instance_for_test() as instance:
        result = env.ingest(today(), instance)
        logs = [e.message or "" for e in instance.all_logs(result.run_id)]
    everything = json.dumps(
        [str(m) for m in materializations(result, "email_sequences")]
    ) + "".join(logs)
    assert "secret-token" not in everything
