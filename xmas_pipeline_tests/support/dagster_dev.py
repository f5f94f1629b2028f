"""Run `xmas-pipeline dev` (intake + `dagster dev`) for a test, and stop all of it after.

`dagster dev` does not always stop on SIGTERM, so the whole process group is stopped, and
killed if it lingers. Ports are free ones picked at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_REPOSITORY = (
    "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
)
_SCHEDULE_TICKS = """
query($selector: ScheduleSelector!, $after: Float) { scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule { scheduleState { ticks(afterTimestamp: $after, limit: 50) { status } } }
} }
"""
_LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
} }
"""


@dataclass
class DevServer:
    home: Path
    ui_url: str
    intake_url: str
    log: Path
    marker: str  # set in every process the run started (XMAS_TEST_RUN)
    process: subprocess.Popen
    _repo: dict[str, str] | None = field(default=None, init=False, repr=False)

    def interrupt(self, timeout: float = 60) -> bool:
        """Ctrl-C, as a person would: SIGINT to `xmas-pipeline dev` alone. True when it and
        everything it started have exited by themselves within `timeout`."""
        self.process.send_signal(signal.SIGINT)
        return wait_for(lambda: not processes_with_marker(self.marker), timeout, interval=0.5)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        response = httpx.post(f"{self.ui_url}/graphql", json=payload, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def _repository(self) -> dict[str, str]:
        # Asked once: every poll of ticks or runs would otherwise ask the webserver again.
        if self._repo is None:
            repo = self.graphql(_REPOSITORY)["repositoriesOrError"]["nodes"][0]
            self._repo = {
                "repositoryLocationName": repo["location"]["name"],
                "repositoryName": repo["name"],
            }
        return self._repo

    def launch(self, job: str, run_config: dict[str, Any] | None = None) -> str:
        """Launch `job` as the launchpad does; the new run's id."""
        params = {
            "selector": {**self._repository(), "jobName": job},
            "runConfigData": run_config or {},
        }
        answer = self.graphql(_LAUNCH, {"params": params})["launchRun"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        return str(answer["run"]["runId"])

    def schedule_ticks(self, schedule: str, after: float) -> list[str]:
        """The statuses of `schedule`'s ticks the daemon made after the epoch time `after`."""
        selector = {**self._repository(), "scheduleName": schedule}
        answer = self.graphql(_SCHEDULE_TICKS, {"selector": selector, "after": after})
        state = answer["scheduleOrError"].get("scheduleState") or {}
        return [str(tick["status"]) for tick in state.get("ticks", [])]

    def runs(self) -> list[str]:
        """`job: status` of the latest runs, newest first (for failure messages)."""
        query = "{ runsOrError(limit: 20) { ... on Runs { results { jobName status } } } }"
        found = self.graphql(query)["runsOrError"].get("results", [])
        return [f"{run['jobName']}: {run['status']}" for run in found]

    def run_status(self, run_id: str) -> str:
        query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
        return str(self.graphql(query, {"id": run_id})["runOrError"].get("status", ""))

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def wait_for(predicate: Any, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    return False


@contextmanager
def running_dev(home: Path, **env: str) -> Iterator[DevServer]:
    ui_port, intake_port = free_port(), free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "dev.log"
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "DAGSTER_", "NOTION_"))
    }
    marker = uuid.uuid4().hex
    child_env.update(
        {
            "XMAS_TEST_RUN": marker,
            "XMAS_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "XMAS_SENSOR_INTERVAL_SECONDS": "5",
            # Tests and benchmarks post many signups from one address: no rate limits
            # (xmas_pipeline_tests/intake/test_abuse*.py cover them).
            "XMAS_SIGNUP_RATE_PER_IP": "off",
            "XMAS_SIGNUP_RATE_PER_EMAIL": "off",
            **env,
        }
    )
    command = [
        str(Path(sys.executable).parent / "xmas-pipeline"),
        "dev",
        "--port",
        str(intake_port),
        "--ui-port",
        str(ui_port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DevServer(
        home=home,
        ui_url=f"http://127.0.0.1:{ui_port}",
        intake_url=f"http://127.0.0.1:{intake_port}",
        log=log,
        marker=marker,
        process=process,
    )
    try:
        up = wait_for(
            lambda: (
                httpx.get(f"{server.ui_url}/server_info", timeout=5).status_code == 200
                and httpx.get(f"{server.intake_url}/healthz", timeout=5).status_code == 200
            ),
            timeout=120,
        )
        if not up:
            raise RuntimeError(f"xmas-pipeline dev did not come up:\n{server.log_tail()}")
        yield server
    finally:
        stop_group(process, marker)


def stop_group(process: subprocess.Popen, marker: str, grace: float = 30.0) -> None:
    """SIGTERM the process group (the CLI stops its children), then SIGKILL whatever is
    left: every process that inherited this run's marker in its environment."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for _ in range(10):
        left = processes_with_marker(marker)
        if not left:
            return
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def processes_with_marker(marker: str) -> list[int]:
    needle = f"XMAS_TEST_RUN={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
