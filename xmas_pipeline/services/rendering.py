"""Rendering that no template can hang or kill: in a child process, watched.

The core's limits (`core.render_limits`) stop the usual runaways in process. What no hook
sees (one C call building something enormous, a pattern that backtracks for minutes) would
still hang the run worker or have it killed for its memory, and with it the send pool. So
the template check (`check_supervised`) and the send path (`render_supervised`) render in a
forked child process, with an address-space cap (`resource.setrlimit`), that hands back
each result as soon as it has it. When the child spends more than the time limit of CPU
on one item (or makes no progress at all for much longer: stuck, not computing), or dies,
that item is the culprit: it is reported stopped, with its template named, the child is
killed, and a new child carries on with the rest. One fork serves a whole check or a
whole send run; a stop costs one more. The limit counts the child's CPU time, not the
clock, so a busy machine slows honest renders down without failing them.

Where `os.fork` does not exist, everything renders in this process under the core's limits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import resource
import select
import signal
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.render import (
    RenderedEmail,
    Renderer,
    TemplateError,
    TemplateSource,
    resolve,
)
from xmas_pipeline.core.template_check import CheckUnit, check_unit, check_units

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class ProcessLimits:
    seconds: float = 10.0  # CPU time per item (one email, one template for one segment)
    memory_bytes: int = 1 << 30  # address space the child may add to what it started with
    # Wall-clock time per item for a child that is not computing but stuck (or, where the
    # child's CPU time cannot be read, the limit itself).
    stuck_seconds: float = 120.0


DEFAULT_PROCESS_LIMITS = ProcessLimits()
# In a send run, a template stopped this often fails the rest of its emails unrendered.
STOPS_BEFORE_GIVING_UP = 2


@dataclass(frozen=True)
class Stopped:
    """An item whose rendering was stopped from outside, or not tried: why ("stopped:
    took more than ...", "not rendered: ...")."""

    reason: str


@dataclass(frozen=True)
class RenderJob:
    base: str
    segment: str
    context: dict[str, Any]


_HEADER = struct.Struct("!Q")
_PR_SET_PDEATHSIG = 1  # prctl(2)


# Decides, before a child starts on an item, that it is not worth rendering: given the
# item and every item stopped so far (with why), a Stopped to report instead, or None.
GiveUp = Callable[[Item, list[tuple[Item, "Stopped"]]], "Stopped | None"]


def supervised_map(
    work: Callable[[Item], Result],
    items: Sequence[Item],
    limits: ProcessLimits = DEFAULT_PROCESS_LIMITS,
    give_up: GiveUp[Item] | None = None,
) -> list[Result | Stopped]:
    """`work` on every item, in a child process; an item that takes longer than
    `limits.seconds`, or on which the child dies, is `Stopped`, and a new child carries on
    with the rest, less those `give_up` answers for. Results must pickle."""
    if not hasattr(os, "fork"):
        return [work(item) for item in items]
    results: dict[int, Result | Stopped] = {}
    stops: list[tuple[Item, Stopped]] = []
    pending = list(range(len(items)))
    while pending:
        if give_up is not None and stops:
            for index in pending:
                verdict = give_up(items[index], stops)
                if verdict is not None:
                    results[index] = verdict
            pending = [index for index in pending if index not in results]
            if not pending:
                break
        done, stopped = _child_run(work, [items[i] for i in pending], limits)
        results.update(zip(pending, done, strict=False))
        pending = pending[len(done) :]
        if stopped is not None:
            results[pending[0]] = stopped
            stops.append((items[pending[0]], stopped))
            pending = pending[1:]
    return [results[index] for index in range(len(items))]


def _child_run(
    work: Callable[[Item], Result], items: Sequence[Item], limits: ProcessLimits
) -> tuple[list[Result], Stopped | None]:
    """Fork a child for `items`: what it finished, and the item it was stopped on."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        _serve(work, items, write_end, limits.memory_bytes, parent)
    os.close(write_end)
    done: list[Result] = []
    status: int | None = None
    try:
        reader = _Reader(read_end)
        watch = _Watch(pid, limits)
        while len(done) < len(items):
            record = reader.next(watch.poll_seconds)
            if record is _Reader.SILENT:
                overrun = watch.overrun()
                if overrun is None:
                    continue
                os.kill(pid, signal.SIGKILL)
                return done, Stopped(f"stopped: {overrun}")
            if record is _Reader.CLOSED:
                _, status = os.waitpid(pid, 0)
                return done, Stopped(f"stopped: {_death(status)}")
            done.append(record)
            watch.next_item()
        return done, None
    finally:
        os.close(read_end)
        if status is None:
            if len(done) < len(items):
                _kill(pid)
            os.waitpid(pid, 0)


class _Watch:
    """What the child has spent on the item it is on: CPU time (from /proc) and, for a
    child stuck without computing, the clock."""

    def __init__(self, pid: int, limits: ProcessLimits) -> None:
        self._pid = pid
        self._limits = limits
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        counts_cpu = self._cpu() is not None
        self._wall_limit = limits.stuck_seconds if counts_cpu else limits.seconds
        # Look often enough to stop a runaway close to its limit.
        self.poll_seconds = max(0.05, min(limits.seconds, self._wall_limit) / 10)
        self.next_item()

    def next_item(self) -> None:
        self._cpu_at = self._cpu() or 0.0
        self._wall_at = time.monotonic()

    def overrun(self) -> str | None:
        """Why the child is to be stopped on its item, or None while it is within limits."""
        cpu = self._cpu()
        if cpu is not None and cpu - self._cpu_at > self._limits.seconds:
            spent = f"more than {self._limits.seconds:g} s of CPU time"
            return f"took {spent} (the rendering process's limit)"
        if time.monotonic() - self._wall_at > self._wall_limit:
            if cpu is None:
                return f"took longer than {self._wall_limit:g} s (the rendering process's limit)"
            return f"made no progress for {self._wall_limit:g} s (the rendering process's limit)"
        return None

    def _cpu(self) -> float | None:
        """The child's CPU seconds so far (user and system), or None without /proc."""
        try:
            with open(f"/proc/{self._pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
        return (int(fields[11]) + int(fields[12])) / self._ticks


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _death(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        name = signal.Signals(-code).name
        return f"the rendering process was killed ({name}; out of memory?)"
    return f"the rendering process failed (exit {code})"


def _serve(
    work: Callable[[Any], Any], items: Sequence[Any], out: int, memory: int, parent: int
) -> NoReturn:
    """The child: render each item, write each result as soon as it is ready, and leave
    without running anything of the parent's (no atexit, no finally of its frames)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with(parent)
        _cap_memory(memory)
        with os.fdopen(out, "wb") as pipe:
            for item in items:
                try:
                    result = work(item)
                except Exception as exc:  # noqa: BLE001 - reported as the item's result
                    result = Stopped(f"failed: {type(exc).__name__}: {str(exc)[:200]}")
                data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                pipe.write(_HEADER.pack(len(data)) + data)
                pipe.flush()
        code = 0
    finally:
        os._exit(code)


def _die_with(parent: int) -> None:
    """Have the kernel kill the child when the run worker dies (Linux): a runaway child
    of a killed worker must not spin on alone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


def _cap_memory(extra: int) -> None:
    """Let the child grow its address space by `extra` bytes at most (Linux; elsewhere
    the time limit alone holds)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[0])
        cap = pages * os.sysconf("SC_PAGE_SIZE") + extra
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass


class _Reader:
    """Length-prefixed pickles from the child, each awaited for at most some seconds."""

    SILENT = object()
    CLOSED = object()

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def next(self, seconds: float) -> Any:
        while True:
            if len(self._buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                end = _HEADER.size + size
                if len(self._buffer) >= end:
                    data = bytes(self._buffer[_HEADER.size : end])
                    del self._buffer[:end]
                    return pickle.loads(data)  # noqa: S301 - our own child's results
            ready, _, _ = select.select([self._fd], [], [], seconds)
            if not ready:
                return self.SILENT
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return self.CLOSED
            self._buffer += chunk


# -- the check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    problems: list[str]
    # (base, segment) -> the email rendered for the sample contact, or why there is none
    rendered: dict[tuple[str, str], RenderedEmail | str]


def check_supervised(
    sources: Mapping[str, TemplateSource],
    campaign: Campaign,
    now: datetime,
    limits: ProcessLimits = DEFAULT_PROCESS_LIMITS,
) -> CheckOutcome:
    """The template check (`core.template_check`), each template for each segment's
    sample contact rendered in a watched child: a runaway template fails the check, named,
    and the others are still checked."""
    renderer = Renderer(sources)
    units = check_units(campaign, now)

    def give_up(unit: CheckUnit, stops: list[tuple[CheckUnit, Stopped]]) -> Stopped | None:
        # One stop fails a template: its other segments are not rendered again.
        name = _template_name(sources, unit.base, unit.segment.value)
        for stopped, why in stops:
            if _template_name(sources, stopped.base, stopped.segment.value) == name:
                was = why.reason.partition(":")[0]
                return Stopped(f"not rendered: {stopped.label} was {was}")
        return None

    results = supervised_map(
        lambda unit: check_unit(renderer, unit, campaign), units, limits, give_up
    )
    problems: list[str] = []
    rendered: dict[tuple[str, str], RenderedEmail | str] = {}
    for unit, result in zip(units, results, strict=True):
        key = (unit.base, unit.segment.value)
        if isinstance(result, Stopped):
            name = _template_name(sources, unit.base, unit.segment.value)
            problems.append(f"{unit.label}: {name}: {result.reason}")
            rendered[key] = problems[-1]
            continue
        problems += result.problems
        rendered[key] = result.rendered or "; ".join(result.problems)
    return CheckOutcome(problems, rendered)


def _template_name(sources: Mapping[str, TemplateSource], base: str, segment: str) -> str:
    try:
        return resolve(sources, base, segment).name
    except TemplateError:
        return base


# -- the send path -------------------------------------------------------------------------


def render_supervised(
    renderer: Renderer,
    jobs: Sequence[RenderJob],
    allowed_hosts: Iterable[str] | None,
    limits: ProcessLimits = DEFAULT_PROCESS_LIMITS,
) -> list[RenderedEmail | TemplateError]:
    """Each job rendered in a watched child: the email, or why it cannot be (a
    TemplateError naming the template). With `allowed_hosts` (None: not checked), an
    email pointing anywhere else is refused (`Renderer.render_linked`)."""
    hosts = None if allowed_hosts is None else sorted(allowed_hosts)

    def work(job: RenderJob) -> RenderedEmail | TemplateError:
        try:
            if hosts is None:
                return renderer.render(job.base, job.segment, job.context)
            return renderer.render_linked(job.base, job.segment, job.context, hosts)
        except TemplateError as exc:
            return exc

    def give_up(job: RenderJob, stops: list[tuple[RenderJob, Stopped]]) -> Stopped | None:
        # A template stopped again and again (one that runs away for every reader) fails
        # its remaining emails at once, so the run goes on to the rest in good time.
        name = _template_name(renderer.templates, job.base, job.segment)
        same = [
            why
            for stopped, why in stops
            if _template_name(renderer.templates, stopped.base, stopped.segment) == name
        ]
        if len(same) < STOPS_BEFORE_GIVING_UP:
            return None
        last = same[-1].reason.partition(": ")[2]
        return Stopped(f"not rendered: it was stopped {len(same)} times in this run ({last})")

    out: list[RenderedEmail | TemplateError] = []
    results = supervised_map(work, jobs, limits, give_up)
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Stopped):
            name = _template_name(renderer.templates, job.base, job.segment)
            result = TemplateError(f"{name}: {result.reason}")
        out.append(result)
    return out


def render_rows(
    renderer: Renderer,
    campaign: Campaign,
    rows: Sequence[Mapping[str, Any]],
    job_for: Callable[[Mapping[str, Any]], RenderJob],
    limits: ProcessLimits = DEFAULT_PROCESS_LIMITS,
) -> list[RenderedEmail | Exception]:
    """Each send-plan row's email, or why it cannot be rendered. `job_for` runs here (it
    may read the store: unsubscribe links); only the rendering goes to the child. Only
    the campaign's allowed hosts may be linked to (`Campaign.link_hosts`)."""
    out: list[RenderedEmail | Exception | None] = []
    jobs: list[RenderJob] = []
    for row in rows:
        try:
            jobs.append(job_for(row))
            out.append(None)
        except (TemplateError, KeyError, ValueError) as exc:
            out.append(exc)  # the data is missing (a reminder without its meeting)
    rendered = iter(render_supervised(renderer, jobs, campaign.link_hosts(), limits))
    return [next(rendered) if item is None else item for item in out]
