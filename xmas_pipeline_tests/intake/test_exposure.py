"""Serving beyond loopback needs CALCOM_WEBHOOK_SECRET: `serve`, `python -m
xmas_pipeline.intake.server` and `xmas-pipeline serve` (one worker or several) refuse to
start without it; and under a real uvicorn, unsigned bookings that came through a proxy are
refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmas_pipeline.intake import server
from xmas_pipeline.intake.http import is_loopback
from xmas_pipeline.intake.server import ExposedWithoutSecret, check_exposure, serve
from xmas_pipeline.settings import Settings, SettingsError
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.intake_process import IntakeProcess, free_port

SECRET = "exposure-test-calcom-secret"
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.53", "127.255.255.254", "::1", "[::1]", "localhost"]
PUBLIC_HOSTS = [
    "0.0.0.0",
    "::",
    "",
    "10.0.0.1",
    "192.168.1.10",
    "203.0.113.7",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "example.com",
    "localhost.example.com",
]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without a developer's pipeline variables, plus `extra`."""
    prefixes = ("XMAS_", "CALCOM_", "RESEND_", "NOTION_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "XMAS_HOME": str(home), **extra}


# -- the check ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_hosts_need_no_secret(tmp_path: Path, host: str) -> None:
    assert is_loopback(host)
    check_exposure(host, Settings.of(home=tmp_path))


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_other_hosts_need_the_secret(tmp_path: Path, host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ExposedWithoutSecret) as caught:
        check_exposure(host, Settings.of(home=tmp_path))
    # Reported like any bad variable, in one line that names it.
    assert isinstance(caught.value, SettingsError)
    assert caught.value.problems.keys() == {"CALCOM_WEBHOOK_SECRET"}
    assert str(caught.value).startswith("CALCOM_WEBHOOK_SECRET ")
    assert "\n" not in str(caught.value)
    check_exposure(host, Settings.of(home=tmp_path, calcom_webhook_secret=SECRET))


def test_serve_refuses_before_anything_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[Any, ...]] = []
    monkeypatch.setattr(server.uvicorn, "run", lambda *args, **kwargs: started.append(args))
    for name in list(os.environ):
        if name.startswith(("XMAS_", "CALCOM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XMAS_HOME", str(tmp_path))
    with pytest.raises(ExposedWithoutSecret):
        serve("0.0.0.0", 8000, Settings.of(home=tmp_path))
    with pytest.raises(ExposedWithoutSecret):
        serve("0.0.0.0", 8000, workers=2)
    assert started == []
    serve("127.0.0.1", 8000, Settings.of(home=tmp_path))
    serve("127.0.0.1", 8000, workers=2)
    monkeypatch.setenv("CALCOM_WEBHOOK_SECRET", SECRET)
    serve("0.0.0.0", 8000, Settings.from_env())
    serve("0.0.0.0", 8000, workers=2)
    assert len(started) == 4


def test_main_reports_it_and_returns_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(server.uvicorn, "run", lambda *args, **kwargs: None)
    for name in list(os.environ):
        if name.startswith(("XMAS_", "CALCOM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XMAS_HOME", str(tmp_path))
    assert server.main(["--host", "0.0.0.0"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: CALCOM_WEBHOOK_SECRET must be set")
    assert server.main(["--host", "127.0.0.1"]) == 0


# -- the commands, as a deployment runs them ------------------------------------------------

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -m intake.server": [sys.executable, "-m", "xmas_pipeline.intake.server"],
    "serve": [str(BIN / "xmas-pipeline"), "serve"],
    "serve --workers 2": [str(BIN / "xmas-pipeline"), "serve", "--workers", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_each_command_refuses_a_public_host_without_the_secret(
    tmp_path: Path, command: str, host: str
) -> None:
    port = free_port()
    result = subprocess.run(
        [*COMMANDS[command], "--host", host, "--port", str(port)],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert line.startswith("error: CALCOM_WEBHOOK_SECRET must be set")
    assert repr(host) in line
    assert not (tmp_path / "inbox").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, 2])
def test_with_the_secret_a_public_host_is_served(tmp_path: Path, workers: int | None) -> None:
    env = clean_env(tmp_path, CALCOM_WEBHOOK_SECRET=SECRET)
    with IntakeProcess(env=env, host="0.0.0.0", workers=workers) as intake:
        response = httpx.get(f"http://127.0.0.1:{intake.port}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["integrations"]["calcom_webhook_signing"] is True
    assert SECRET not in response.text


# -- under uvicorn, which rewrites the client address from a trusted proxy's headers ---------


@pytest.mark.slow
def test_unsigned_bookings_through_a_proxy_are_refused_by_the_real_server(tmp_path: Path) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    raw = json.dumps(webhook_created("uid-1", start, at=datetime.now(UTC))).encode()
    headers = {"Content-Type": "application/json"}
    with IntakeProcess(env=clean_env(tmp_path)) as intake:
        url = f"{intake.url}/webhook/calcom-booking"
        proxied = [
            {"X-Forwarded-For": "203.0.113.7"},
            {"X-Forwarded-For": "127.0.0.1"},
            {"Forwarded": "for=203.0.113.7"},
            {"X-Real-IP": "203.0.113.7"},
        ]
        for extra in proxied:
            response = httpx.post(url, content=raw, headers={**headers, **extra}, timeout=5)
            assert response.status_code == 401, extra
            assert "CALCOM_WEBHOOK_SECRET" in response.json()["reason"]
        direct = httpx.post(url, content=raw, headers=headers, timeout=5)
    assert direct.status_code == 200, direct.text
    assert len(list((tmp_path / "inbox" / "bookings").glob("*/*.json"))) == 1
