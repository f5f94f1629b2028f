"""The code location: `xmas_pipeline.definitions:defs` (docs/architecture.md)."""

from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.settings import Settings

defs = build_definitions(Settings.from_env())
