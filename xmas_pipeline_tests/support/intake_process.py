"""The intake as a child process: for `xmas-pipeline dev`, the tests and the benchmark.

The child gets its own process group, so `kill()` takes down uvicorn and anything it
started (its worker processes, with `workers`) at once, the way a crash or an OOM kill
would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def live_processes() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process on the machine: pid -> (parent pid, group), from
    Linux's `/proc`."""
    table: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # `pid (comm) state ppid pgrp ...`; comm may hold spaces, so split after it.
            state, ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if state != "Z":
                table[int(stat.parent.name)] = (int(ppid), int(pgrp))
    return table


class IntakeProcess:
    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        workers: int | None = None,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else None
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """`python -m xmas_pipeline.intake.server`, or with `workers` the command a deployment
        runs, `xmas-pipeline serve --workers N`."""
        where = ["--host", self.host, "--port", str(self.port)]
        if self.workers is None:
            return [sys.executable, "-m", "xmas_pipeline.intake.server", *where]
        serve = [sys.executable, "-m", "xmas_pipeline.cli", "serve", *where]
        return [*serve, "--workers", str(self.workers)]

    def start(self, ready_within: float = 90.0) -> IntakeProcess:
        """Start the server and return once /healthz answers (several workers importing the
        package at once on a loaded 2-core machine have taken over 30 s)."""
        command = self.command()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"intake server exited with code {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"intake server not ready within {ready_within:.0f}s")

    def _signal(self, signum: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def signal_leader(self, signum: int) -> None:
        """A signal to the server process alone (as `kill PID` or a service manager sends
        it), not to its workers."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    def group_alive(self) -> list[int]:
        """The live processes of the server's process group."""
        if self.proc is None:
            return []
        return sorted(pid for pid, (_, pgrp) in live_processes().items() if pgrp == self.proc.pid)

    def descendants(self) -> list[int]:
        """The live processes the server started (its workers and their helpers)."""
        if self.proc is None:
            return []
        table = live_processes()
        found: list[int] = []
        parents = {self.proc.pid}
        while parents:
            children = [pid for pid, (ppid, _) in table.items() if ppid in parents]
            found += children
            parents = set(children)
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL the whole process group: no graceful shutdown, like a crash."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self._kill_stragglers()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (in-flight requests finish), then SIGKILL after `grace` seconds."""
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._kill_stragglers()

    def _kill_stragglers(self) -> None:
        # Once the leader is gone its group can no longer be signalled as a whole, yet a
        # worker that outlived it would keep running: end each one by its own id.
        for pid in self.group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> IntakeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
