"""Rendering in a watched child process: what no in-process limit can stop (one C call
that runs for minutes, memory) is stopped from outside, reported as that template's
failure, and the rest is rendered all the same; the run's own process never suffers.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.render import (
    RenderedEmail,
    Renderer,
    TemplateError,
    TemplateSource,
    load_template_dir,
)
from xmas_pipeline.core.samples import sample_context
from xmas_pipeline.core.segments import Segment
from xmas_pipeline.services.rendering import (
    ProcessLimits,
    RenderJob,
    Stopped,
    check_supervised,
    render_supervised,
    supervised_map,
)

NOW = datetime(2025, 12, 1, 15, 0, tzinfo=UTC)
# Every step is small, so no hook of the sandbox objects; printing the list is one C call
# that writes 2**40 items (minutes of work and ever more memory).
BEYOND_HOOKS = (
    "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
    "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}"
)
QUICK = ProcessLimits(seconds=2)


def with_email_3(extra: str) -> dict[str, TemplateSource]:
    shipped = load_template_dir()
    good = shipped["email-3"]
    body = good.html.replace("</body>", extra + "\n</body>")
    return {**shipped, "email-3": TemplateSource("email-3", good.subject, body, "notion")}


def child_pids() -> set[int]:
    """This process's children, running or not yet reaped."""
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:
            found.add(int(stat.parent.name))
    return found


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before() -> None:
    _BEFORE.clear()
    _BEFORE.update(child_pids())


def children_cpu() -> float:
    """CPU seconds of this process's finished (reaped) children: what the rendering
    children spent, whatever the machine's load did to the clock."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def no_children_left() -> bool:
    """No rendering child of this test is left, running or unreaped. Only this test's
    children count: in a shared test process other tests' servers may still be running."""
    return child_pids() <= _BEFORE


@pytest.mark.timeout(60)
def test_a_template_no_hook_can_stop_fails_the_check_in_time(campaign: Campaign) -> None:
    started = children_cpu()
    outcome = check_supervised(with_email_3(BEYOND_HOOKS), campaign, NOW, QUICK)
    # One stop fails the template: its other segments are not tried again.
    assert children_cpu() - started < 4 * QUICK.seconds
    assert outcome.problems == [
        "email-3 [CRITICAL]: email-3: stopped: took more than 2 s of CPU time "
        "(the rendering process's limit)",
        "email-3 [URGENT]: email-3: not rendered: email-3 [CRITICAL] was stopped",
        "email-3 [OPTIMIZE]: email-3: not rendered: email-3 [CRITICAL] was stopped",
    ]
    # Every other template was rendered, and is shown.
    rendered = {key: value for key, value in outcome.rendered.items() if key[0] != "email-3"}
    assert len(rendered) == 27
    assert all(isinstance(email, RenderedEmail) for email in rendered.values())
    assert no_children_left()


def test_the_check_in_the_child_finds_what_the_check_in_process_finds(
    campaign: Campaign,
) -> None:
    outcome = check_supervised(load_template_dir(), campaign, NOW)
    assert outcome.problems == []
    email = outcome.rendered[("email-2", "CRITICAL")]
    assert isinstance(email, RenderedEmail) and email.template == "email-2.critical"
    missing = {k: v for k, v in load_template_dir().items() if k != "reminder-2"}
    problems = check_supervised(missing, campaign, NOW).problems
    assert problems and all(p.startswith("reminder-2 [") for p in problems)


@pytest.mark.timeout(60)
def test_a_send_names_each_culprit_and_renders_the_rest(campaign: Campaign) -> None:
    renderer = Renderer(with_email_3(BEYOND_HOOKS))
    context = sample_context("email-3", Segment.URGENT, campaign, NOW)
    jobs = [RenderJob("email-3" if i % 2 else "email-2", "URGENT", context) for i in range(8)]
    started = children_cpu()
    results = render_supervised(renderer, jobs, campaign.link_hosts(), QUICK)
    # Two stops of one template, then its remaining emails fail at once.
    assert children_cpu() - started < 3 * QUICK.seconds + 4
    good, bad = results[0::2], results[1::2]
    assert all(isinstance(r, RenderedEmail) and r.template == "email-2.urgent" for r in good)
    assert all(isinstance(r, TemplateError) for r in bad)
    stopped = "email-3: stopped: took more than 2 s of CPU time (the rendering process's limit)"
    assert [str(r) for r in bad[:2]] == [stopped, stopped]
    assert [str(r) for r in bad[2:]] == [
        "email-3: not rendered: it was stopped 2 times in this run "
        "(took more than 2 s of CPU time (the rendering process's limit))"
    ] * 2
    assert no_children_left()


def test_the_child_renders_what_this_process_renders(campaign: Campaign) -> None:
    renderer = Renderer(load_template_dir())
    jobs = [
        RenderJob(base, segment.value, sample_context(base, segment, campaign, NOW))
        for base in ("email-1", "email-7", "reminder-2")
        for segment in Segment
    ]
    in_child = render_supervised(renderer, jobs, campaign.link_hosts())
    here = [renderer.render(j.base, j.segment, j.context) for j in jobs]
    assert in_child == here


def test_a_link_to_a_host_not_allowed_is_refused_at_send_time(campaign: Campaign) -> None:
    # A template can branch on the reader: the check's sample contact never sees this.
    branch = (
        "{% if email != 'sample@example.com' %}"
        '<img src="https://elsewhere.example/p.gif?e={{ email|urlencode }}">{% endif %}'
    )
    sources = with_email_3(branch)
    line = sources["email-3"].html.split("elsewhere.example")[0].count("\n") + 1
    reader = sample_context("email-3", Segment.URGENT, campaign, NOW)
    sample = dict(reader)
    reader["email"] = "jane@x.com"
    jobs = [RenderJob("email-3", "URGENT", sample), RenderJob("email-3", "URGENT", reader)]
    first, second = render_supervised(Renderer(sources), jobs, campaign.link_hosts())
    assert isinstance(first, RenderedEmail)
    assert isinstance(second, TemplateError)
    assert str(second) == (
        f"line {line} of email-3: points at elsewhere.example, which is not an allowed host"
    )
    assert "jane" not in str(second)


@pytest.mark.timeout(60)
def test_the_limit_counts_cpu_time_not_the_clock() -> None:
    # Waiting costs no CPU: on a busy machine an honest render waits for a core in the
    # same way, and must not be stopped for it. Counting the clock failed real emails.
    patient = ProcessLimits(seconds=0.3, stuck_seconds=30)
    assert supervised_map(lambda n: (time.sleep(1.0), n)[1], [1, 2], patient) == [1, 2]

    # Computing past the limit is stopped, and the next item is still done.
    def spin(n: int) -> int:
        while n < 0:
            pass
        return n

    assert supervised_map(spin, [-1, 3], patient) == [
        Stopped("stopped: took more than 0.3 s of CPU time (the rendering process's limit)"),
        3,
    ]
    assert no_children_left()


@pytest.mark.timeout(60)
def test_a_child_stuck_without_computing_is_stopped_too() -> None:
    stuck = ProcessLimits(seconds=5, stuck_seconds=0.5)
    results = supervised_map(lambda n: (time.sleep(600) if n == 1 else None, n)[1], [1, 2], stuck)
    assert results == [
        Stopped("stopped: made no progress for 0.5 s (the rendering process's limit)"),
        2,
    ]
    assert no_children_left()


def test_a_child_out_of_memory_fails_that_item_only() -> None:
    small = ProcessLimits(seconds=30, memory_bytes=256 << 20)
    results = supervised_map(lambda size: len(bytearray(size)), [10, 1 << 30, 20], small)
    assert results[0] == 10 and results[2] == 20
    assert results[1] == Stopped("failed: MemoryError: ")
    # The run's own process has no such cap.
    assert len(bytearray(300 << 20)) == 300 << 20


def test_a_child_that_dies_fails_the_item_it_was_on() -> None:
    def work(item: int) -> int:
        if item == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return item * 10

    results = supervised_map(work, [1, 2, 3, 4])
    assert results[0] == 10 and results[2:] == [30, 40]
    assert results[1] == Stopped(
        "stopped: the rendering process was killed (SIGKILL; out of memory?)"
    )
    assert no_children_left()


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.timeout(60)
def test_a_child_dies_with_the_run_worker() -> None:
    # A run worker killed outright (the OOM killer, kill -9) leaves no renderer spinning.
    script = (
        "import os, time\n"
        "from xmas_pipeline.services.rendering import supervised_map\n"
        "supervised_map(lambda _: (print(os.getpid(), flush=True), time.sleep(600)), [1])\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert worker.stdout is not None
    child = int(worker.stdout.readline())
    try:
        assert running(child)
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(child)
    finally:
        if running(child):  # leave nothing behind, whatever the outcome
            os.kill(child, signal.SIGKILL)
