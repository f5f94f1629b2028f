"""The production topology as real processes on this machine, for tests and benchmarks.

Dagster's instance on PostgreSQL (`deploy/dagster.yaml` as shipped, a fresh database per
use), the code location as a gRPC server, the webserver and the daemon as separate
processes, and the intake with several workers: each started with the command
`support/topology.py` gives (the same ones the files under `deploy/` run). Every process
leads its own process group and carries a marker in its environment, so a test can kill
one (`kill -9` of the group, as a crash would) and restart it, and `stop` leaves nothing
running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from xmas_pipeline.dagster_defs.executor import WORKER_TAG
from xmas_pipeline_tests.support import topology
from xmas_pipeline_tests.support.dagster_dev import free_port, processes_with_marker, stop_group
from xmas_pipeline_tests.support.stores import postgres_database

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """The predicate's first truthy value, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError, OSError):
            value = predicate()
            if value:
                return value
        time.sleep(interval)
    return None


@dataclass
class Production:
    home: Path
    env: dict[str, str]
    code_port: int
    ui_port: int
    intake_port: int
    intake_workers: int
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- processes ------------------------------------------------------------------------

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def workspace(self) -> Path:
        return self.dagster_home / "workspace.yaml"

    def command(self, name: str) -> list[str]:
        if name == "code-server":
            parts = topology.code_server_command("127.0.0.1", self.code_port)
        elif name == "webserver":
            parts = topology.webserver_command(str(self.workspace), "127.0.0.1", self.ui_port)
        elif name == "daemon":
            parts = topology.daemon_command(str(self.workspace))
        elif name == "intake":
            parts = topology.intake_command("127.0.0.1", self.intake_port, self.intake_workers)
        else:
            raise KeyError(name)
        return [str(BIN / parts[0]), *parts[1:]]

    def start(self, name: str) -> None:
        log = (self.home / f"{name}.log").open("ab")
        env = {**self.env, "XMAS_TEST_RUN": self.marker}
        self.processes[name] = subprocess.Popen(
            self.command(name),
            cwd=self.home,  # not the repository: the code must come from the package
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def kill(self, name: str) -> None:
        """`kill -9` of the process and everything it started (its run workers too)."""
        process = self.processes[name]
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_group(process, self.marker, grace=10)
        for pid in processes_with_marker(self.marker):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.home / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- looking in ---------------------------------------------------------------------------

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def instance(self) -> dg.DagsterInstance:
        """The instance as the processes see it (close it when done)."""
        os.environ["DAGSTER_POSTGRES_URL"] = self.env["DAGSTER_POSTGRES_URL"]
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def graphql(self, query: str) -> dict[str, Any]:
        response = httpx.post(f"{self.ui_url}/graphql", json={"query": query}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            ui = httpx.get(f"{self.ui_url}/server_info", timeout=5).status_code == 200
            intake = httpx.get(f"{self.intake_url}/healthz", timeout=5).status_code == 200
            return ui and intake and self.location_loaded()

        if not wait_until(ready, timeout):
            tails = "\n".join(f"--- {n}\n{self.log_tail(n)}" for n in self.processes)
            raise RuntimeError(f"the production topology did not come up:\n{tails}")

    def location_loaded(self) -> bool:
        data = self.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }"
        )
        entries = data["workspaceOrError"]["locationEntries"]
        return bool(entries) and entries[0]["locationOrLoadError"]["__typename"] == (
            "RepositoryLocation"
        )

    def runs(self, instance: dg.DagsterInstance, job: str | None = None) -> list[dg.DagsterRun]:
        return list(instance.get_runs(filters=dg.RunsFilter(job_name=job)))

    def worker_pid(self, instance: dg.DagsterInstance, run_id: str) -> int | None:
        run = instance.get_run_by_id(run_id)
        tag = run.tags.get(WORKER_TAG) if run else None
        return int(tag.rsplit(":", 1)[1]) if tag else None

    def describe_runs(self, instance: dg.DagsterInstance) -> str:
        """Every run with its status and, when it failed, why: for assertion messages."""
        lines = []
        for run in reversed(list(instance.get_runs(limit=30))):
            line = f"{run.run_id[:8]} {run.job_name} {run.status.value}"
            if run.status == dg.DagsterRunStatus.FAILURE:
                failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
                if failures and failures[-1].dagster_event:
                    line += f" - {(failures[-1].dagster_event.message or '')[:200]}"
            lines.append(line)
        return "\n".join(lines)

    def idle(self, instance: dg.DagsterInstance) -> bool:
        return not instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=1)


@contextmanager
def running_production(
    home: Path, env: Mapping[str, str] | None = None, *, intake_workers: int = 2
) -> Iterator[Production]:
    """The whole production topology on fresh PostgreSQL databases; stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        dagster_db = stack.enter_context(postgres_database())
        store_db = stack.enter_context(postgres_database())
        prod = Production(
            home=home,
            env={},
            code_port=free_port(),
            ui_port=free_port(),
            intake_port=free_port(),
            intake_workers=intake_workers,
        )
        prod.dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "deploy" / "dagster.yaml", prod.dagster_home / "dagster.yaml")
        prod.workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {prod.code_port}\n      location_name: {topology.CODE_LOCATION}\n",
            encoding="utf-8",
        )
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XMAS_", "DAGSTER_", "NOTION_", "RESEND_", "CALCOM_"))
        }
        prod.env = {
            **inherited,
            "DAGSTER_HOME": str(prod.dagster_home),
            "DAGSTER_POSTGRES_URL": dagster_db.replace(
                "postgresql+psycopg://", "postgresql+psycopg2://"
            ),
            "XMAS_HOME": str(home / "xmas"),
            "XMAS_DATABASE_URL": store_db,
            "XMAS_INBOX_URL": str(home / "inbox"),
            # Tests and benchmarks post many signups from one address: no rate limits
            # (xmas_pipeline_tests/intake/test_abuse*.py cover them).
            "XMAS_SIGNUP_RATE_PER_IP": "off",
            "XMAS_SIGNUP_RATE_PER_EMAIL": "off",
            **dict(env or {}),
        }
        saved = os.environ.get("DAGSTER_POSTGRES_URL")
        try:
            # Both migrate steps, as every deployment runs them before the processes.
            for migrate in (topology.migrate_command(), topology.store_migrate_command()):
                subprocess.run(
                    [str(BIN / migrate[0]), *migrate[1:]],
                    env=prod.env,
                    cwd=home,
                    check=True,
                    capture_output=True,
                )
            for name in ("code-server", "webserver", "daemon", "intake"):
                prod.start(name)
            prod.wait_ready()
            yield prod
        finally:
            prod.stop()
            if saved is None:
                os.environ.pop("DAGSTER_POSTGRES_URL", None)
            else:
                os.environ["DAGSTER_POSTGRES_URL"] = saved
