"""Run the intake under uvicorn: `serve(...)`, or `python -m xmas_pipeline.intake.server`."""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from xmas_pipeline.intake.app import create_app
from xmas_pipeline.intake.http import is_loopback
from xmas_pipeline.settings import Settings, SettingsError

# What each worker process imports and calls to build its app (see `serve`).
APP_FACTORY = "xmas_pipeline.intake.app:app_from_env"


class ExposedWithoutSecret(SettingsError):
    """Serving beyond this machine without `CALCOM_WEBHOOK_SECRET`. A `SettingsError`, so the
    CLI reports it like any bad variable (exit status 2), but in one line."""

    def __init__(self, host: str) -> None:
        self.variable = Settings.env_name("calcom_webhook_secret")
        self.line = (
            f"{self.variable} must be set to serve on {host!r}, which is not a loopback address"
            " (anyone reaching it could post unsigned Cal.com bookings)"
        )
        super().__init__({self.variable: self.line})

    def __str__(self) -> str:
        return self.line


def check_exposure(host: str, settings: Settings) -> None:
    """Refuse to listen beyond loopback (127.0.0.0/8, ::1, localhost) unless Cal.com
    webhooks must be signed: the app accepts unsigned ones only from loopback, and a local
    proxy in front could still relay outside traffic, so the secret is the real guard."""
    if not is_loopback(host) and not settings.reveal("calcom_webhook_secret"):
        raise ExposedWithoutSecret(host)


WORKER_HEALTHCHECK_S = 60


def _log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    # The intake's own lines (accepted kind + file, rejections) through uvicorn's handler.
    config["loggers"]["xmas_pipeline"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def _options(host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        # The access log would print query strings, and unsubscribe tokens live there.
        "access_log": False,
        "log_config": _log_config(),
        "server_header": False,
        # The app alone reads X-Forwarded-For, trusting XMAS_TRUSTED_PROXIES; uvicorn's
        # own rewriting (for 127.0.0.1) would make it see a forwarded address as the peer.
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
        # uvicorn kills a worker that has not answered its supervisor's ping within this
        # many seconds. A new worker answers only once it has imported the app: 5 s (the
        # default) was not always enough on a busy 2-core host, and every replacement was
        # killed the same way, so the intake never came up.
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_S,
    }


def worker_count(value: str) -> int:
    """`--workers` as argparse reads it: a whole number, at least 1."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return count


def serve(host: str, port: int, settings: Settings | None = None, workers: int = 1) -> None:
    """Serve until interrupted; SIGTERM/Ctrl-C let in-flight requests finish first.

    With `workers` > 1, uvicorn runs that many worker processes on one listening socket, and
    SIGTERM to this process stops them all, each finishing its requests. Each worker builds
    the app from the environment (`APP_FACTORY`), so `settings` must be the environment's.
    Raises `ExposedWithoutSecret` (a `SettingsError`) for a non-loopback `host` without
    `CALCOM_WEBHOOK_SECRET`, before anything listens.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers == 1:
        settings = settings or Settings.from_env()
        check_exposure(host, settings)
        uvicorn.run(create_app(settings), **_options(host, port))
        return
    # Read here once, so a bad variable fails before any worker starts.
    from_env = Settings.from_env()
    if settings is not None and settings != from_env:
        # A worker process can only be given the environment, never an object.
        raise ValueError("with several workers the settings must come from the environment")
    check_exposure(host, from_env)
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, **_options(host, port))


def main(argv: list[str] | None = None) -> int:
    """The command line; 2 (with one `error:` line per problem) for bad configuration."""
    parser = argparse.ArgumentParser(description="Run the xmas_pipeline HTTP intake.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=worker_count, default=1, help="processes (default 1)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        port = args.port if args.port is not None else settings.intake_port
        serve(args.host, port, settings, workers=args.workers)
    except SettingsError as exc:  # as `xmas-pipeline` reports it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
