"""The tiers' collection: the modules `conftest.LONGEST_FIRST` starts first exist and are
real-process modules (a renamed one would silently start last and stretch the tier), and
collection puts them first, in that order; under XMAS_TIMEOUT_SCALE (the niced fast tier
of `make test-all`) every time-out is stretched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xmas_pipeline_tests.conftest import LONGEST_FIRST, longest_first

TESTS = Path(__file__).resolve().parent


def test_each_module_started_first_is_a_real_process_module() -> None:
    for name in LONGEST_FIRST:
        [module] = list(TESTS.rglob(name))
        assert "pytest.mark.slow" in module.read_text(), module


class _Item:
    def __init__(self, name: str) -> None:
        self.path = TESTS / "e2e" / name


def test_collection_puts_the_longest_modules_first() -> None:
    items = [_Item(n) for n in ("test_a.py", *reversed(LONGEST_FIRST), "test_b.py")]
    longest_first(items)  # type: ignore[arg-type]
    assert [i.path.name for i in items] == [*LONGEST_FIRST, "test_a.py", "test_b.py"]


SLEEPY = """
import time, pytest

@pytest.mark.timeout(1)
def test_marked():
    time.sleep(1.3)

def test_default():
    time.sleep(1.3)
"""


@pytest.mark.parametrize(("scale", "outcome"), [("", {"failed": 2}), ("3", {"passed": 2})])
def test_time_outs_are_stretched_by_the_scale(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, scale: str, outcome: dict
) -> None:
    # The suite's own collection hook, reading the scale from the environment as it does.
    pytester.makeconftest(
        "from xmas_pipeline_tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    pytester.makeini("[pytest]\ntimeout = 1\n")
    pytester.makepyfile(SLEEPY)
    monkeypatch.setenv("XMAS_TIMEOUT_SCALE", scale)
    # The run is in a folder of its own: it finds this repository's test helpers here.
    path = os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(**outcome)
