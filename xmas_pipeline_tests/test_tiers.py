"""The real-process tier's order: the modules `conftest.LONGEST_FIRST` starts first exist
and are real-process modules (a renamed one would silently start last and stretch the
tier), and collection puts them first, in that order."""

from __future__ import annotations

from pathlib import Path

from xmas_pipeline_tests.conftest import LONGEST_FIRST, pytest_collection_modifyitems

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
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.path.name for i in items] == [*LONGEST_FIRST, "test_a.py", "test_b.py"]
