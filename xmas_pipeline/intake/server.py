"""Run the intake under uvicorn: `serve(...)`, or `python -m xmas_pipeline.intake.server`."""

from __future__ import annotations

import argparse
import copy
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings


def _log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    # The intake's own lines (accepted kind + file, rejections) through uvicorn's handler.
    config["loggers"]["xmas_pipeline"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Serve until interrupted; SIGTERM/Ctrl-C let in-flight requests finish first."""
    app = create_app(settings or Settings.from_env())
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the xmas_pipeline HTTP intake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    serve(args.host, args.port if args.port is not None else settings.intake_port, settings)


if __name__ == "__main__":
    main()
