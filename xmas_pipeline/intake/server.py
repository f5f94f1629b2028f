"""Run the intake under uvicorn: `serve(...)`, or `python -m xmas_pipeline.intake.server`."""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.intake.settings import DEFAULT_PORT, IntakeSettings


def _log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    # The intake's own lines (accepted kind + file, rejections) through uvicorn's handler.
    config["loggers"]["xmas_pipeline"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def serve(host: str, port: int, settings: IntakeSettings | None = None) -> None:
    """Serve until interrupted; SIGTERM/Ctrl-C let in-flight requests finish first."""
    app = create_app(settings or IntakeSettings.from_env())
    uvicorn.run(
        app,
        host=host,
        port=port,
        # The access log would print query strings, and unsubscribe tokens live there.
        access_log=False,
        log_config=_log_config(),
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def default_port() -> int:
    return int(os.environ.get("XMAS_INTAKE_PORT", "").strip() or DEFAULT_PORT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the xmas_pipeline HTTP intake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    serve(args.host, args.port if args.port is not None else default_port())


if __name__ == "__main__":
    main()
