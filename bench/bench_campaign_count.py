"""Benchmark: what the daemon and the UI pay per campaign (targets: with five campaigns,
at most 1.3x the sensor evaluations per minute and the code location's cold start of one).

Builds the code location from a campaigns folder holding N copies of the shipped
campaign (each its own slug) and prints: the time to load it (imports, every campaign
folder, the Definitions and their repository, as the code server does when the UI
starts), the sensors and how often the daemon evaluates them, and the schedules.

Run: `PYTHONPATH=. .venv/bin/python bench/bench_campaign_count.py --campaigns 5`; the
cold start of one against five, as whole processes, with any process timer, e.g.
`/usr/bin/time -v` on each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

started = time.perf_counter()

import dagster as dg  # noqa: E402  (timed: the imports are part of a cold start)

from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR  # noqa: E402
from xmas_pipeline.dagster_defs.build import build_definitions  # noqa: E402
from xmas_pipeline.settings import Settings  # noqa: E402

SOURCE = "christmas-2025"


def campaigns_folder(root: Path, count: int) -> Path:
    """`count` campaigns: the shipped one, and copies under their own slug and names."""
    for n in range(count):
        slug = SOURCE if n == 0 else f"campaign-{n + 1}"
        target = root / slug
        shutil.copytree(SHIPPED_CAMPAIGNS_DIR / SOURCE, target)
        if n:
            text = (target / "campaign.yaml").read_text(encoding="utf-8")
            text = text.replace(f"slug: {SOURCE}", f"slug: {slug}")
            text = text.replace("name: Christmas 2025", f"name: Campaign {n + 1}")
            text = text.replace('"Christmas 2025"', f'"Campaign {n + 1}"')
            text = text.replace("Christmas Campaign Status", f"Campaign {n + 1} Status")
            (target / "campaign.yaml").write_text(text, encoding="utf-8")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaigns", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-count-") as tmp:
        folder = campaigns_folder(Path(tmp) / "campaigns", args.campaigns)
        settings = Settings.from_env(
            {"XMAS_HOME": str(Path(tmp) / "home"), "XMAS_CAMPAIGNS_DIR": str(folder)}
        )
        loaded = settings.campaigns()
        assert len(loaded.loaded) == args.campaigns, loaded.describe_broken()
        defs = build_definitions(settings)
        repo = defs.get_repository_def()
        ready = time.perf_counter() - started
        sensors = repo.sensor_defs
        per_minute = sum(60 / (s.minimum_interval_seconds or 30) for s in sensors)
        schedules = repo.schedule_defs
        print(
            f"campaigns: {args.campaigns}; code location loaded in {ready:.2f} s; "
            f"{len(sensors)} sensors, {per_minute:.1f} evaluations/minute; "
            f"{len(schedules)} schedules; {len(repo.assets_defs_by_key)} assets; "
            f"{len(repo.get_all_jobs())} jobs"
        )
        assert isinstance(defs, dg.Definitions)


if __name__ == "__main__":
    main()
