"""What a test needs from the machine, and what happens when it is missing.

On a developer's machine a test whose service cannot be had (no Chromium, no PostgreSQL)
is skipped with one line naming what is missing and how to get it. CI sets
`XMAS_STRICT_SKIPS=1`, which turns each such skip into a failure: CI never skips silently.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

STRICT_ENV = "XMAS_STRICT_SKIPS"


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def missing(what: str, how: str) -> NoReturn:
    """Skip (or, under XMAS_STRICT_SKIPS, fail) the test: `what` is missing; `how` gets it."""
    reason = f"{what}: {how}"
    if strict():
        pytest.fail(f"{reason} ({STRICT_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)
