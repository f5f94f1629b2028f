"""A sensor ticked the way the daemon ticks it: its cursor carried from tick to tick, and
the asset events it returns (asset check evaluations) recorded in the instance, as
`dagster._daemon.sensor` does after each evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from xmas_pipeline_tests.support.pipeline_env import PipelineEnv


def resources_of(env: PipelineEnv, *names: str) -> dict[str, Any]:
    """The code location's own resources, by name (as the daemon gives them to a sensor)."""
    resources = env.defs.get_repository_def().get_top_level_resources()
    return {name: resources[name] for name in names}


@dataclass
class Ticker:
    env: PipelineEnv
    instance: dg.DagsterInstance
    name: str
    resources: Mapping[str, Any]
    cursor: str | None = None

    @classmethod
    def of(cls, env: PipelineEnv, instance: dg.DagsterInstance, name: str) -> Ticker:
        sensor = env.defs.resolve_sensor_def(name)
        return cls(env, instance, name, resources_of(env, *sorted(sensor.required_resource_keys)))

    def __call__(self) -> Any:
        sensor = self.env.defs.resolve_sensor_def(self.name)
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=dict(self.resources)
        )
        data = sensor.evaluate_tick(context)
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = data.cursor
        return data
