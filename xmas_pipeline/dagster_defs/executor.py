"""Every run's executor: all steps in the run worker's own process, with a heartbeat.

In process, because a run here is a few short steps: killing the run worker then stops
everything it was doing, instead of leaving step processes behind. The heartbeat is a run
tag the worker refreshes every few seconds (`HEARTBEAT_TAG`, seconds since the epoch, in
the instance's run storage). `run_watchdog_sensor` marks a run whose heartbeat stopped as
failed, whatever killed it and whatever launched it: the run monitoring of Dagster's
default launcher cannot see a worker that died together with its code server.
"""

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.settings import Settings

HEARTBEAT_TAG = "xmas/heartbeat"
WORKER_TAG = "xmas/worker"  # host:pid of the run worker, for people and for tests


def beat(instance: dg.DagsterInstance, run_id: str) -> None:
    instance.add_run_tags(run_id, {HEARTBEAT_TAG: f"{time.time():.3f}"})


# A run in one of these may still be sending; a run that died stays STARTED until the
# watchdog (or Dagster's run monitoring) marks it failed.
LIVE_STATUSES = frozenset(
    {
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    }
)


def run_is_live(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run `run_id` has not ended (False for a run the instance never had)."""
    run = instance.get_run_by_id(run_id) if run_id else None
    return run is not None and run.status in LIVE_STATUSES


BACKFILL_TAG = "dagster/backfill"
_ROOT_BACKFILL_TAG = "dagster/root_backfill_id"
_ROOT_RUN_TAG = "dagster/root_run_id"


def is_backfill(run: dg.DagsterRun) -> bool:
    """Whether a person launched this run as (part of) a backfill."""
    return bool(run.tags.get(BACKFILL_TAG) or run.tags.get(_ROOT_BACKFILL_TAG))


def request_id(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """What a person asked for, the same for every attempt at it: the backfill (its first
    one, when a backfill was re-executed), else the first run of a chain of re-executions.
    A forced send's idempotency key is derived from it, so re-executing a failed run
    sends only what the first attempt did not."""
    root_id = run.tags.get(_ROOT_RUN_TAG) or run.run_id
    root = run if root_id == run.run_id else (instance.get_run_by_id(root_id) or run)
    for source in (run, root):
        backfill = source.tags.get(_ROOT_BACKFILL_TAG) or source.tags.get(BACKFILL_TAG)
        if backfill:
            return f"backfill-{backfill}"
    return root_id


class HeartbeatExecutor(dg.Executor):
    """Runs another executor's steps while a thread keeps the run's heartbeat fresh."""

    def __init__(self, inner: dg.Executor, interval: float) -> None:
        self._inner = inner
        self._interval = interval

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        instance, run_id = plan_context.instance, plan_context.run_id
        instance.add_run_tags(run_id, {WORKER_TAG: f"{socket.gethostname()}:{os.getpid()}"})
        beat(instance, run_id)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._keep_beating,
            args=(instance, run_id, stop),
            name="xmas-run-heartbeat",
            daemon=True,  # never keeps a finished worker alive
        )
        thread.start()
        try:
            yield from self._inner.execute(plan_context, execution_plan)
        finally:
            stop.set()
            thread.join(timeout=self._interval + 5)

    def _keep_beating(
        self, instance: dg.DagsterInstance, run_id: str, stop: threading.Event
    ) -> None:
        while not stop.wait(self._interval):
            try:
                beat(instance, run_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the run goes on
                continue


def heartbeat_executor(interval: float) -> dg.ExecutorDefinition:
    @dg.executor(
        name="in_process_with_heartbeat",
        config_schema=dg.in_process_executor.config_schema.as_field(),
    )
    def _executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        inner = dg.in_process_executor.executor_creation_fn(init_context)  # type: ignore[misc]
        return HeartbeatExecutor(inner, interval)

    return _executor


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    return dg.Definitions(executor=heartbeat_executor(settings.run_heartbeat_seconds))
