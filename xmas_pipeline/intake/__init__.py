"""The HTTP intake (DESIGN.md, "HTTP intake"): `create_app`, `serve`, `IntakeSettings`."""

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.intake.server import serve
from xmas_pipeline.intake.settings import IntakeSettings

__all__ = ["IntakeSettings", "create_app", "serve"]
