"""The upgrade fixtures (`fixtures/upgrade/`, made by its `generate.py` at the last
single-campaign release) unpacked for a test: XMAS_HOME, a Dagster instance folder, the
store (the SQLite file inside XMAS_HOME, or the dump loaded into a fresh PostgreSQL
database) and, with Notion on, the fake Notion's workspace."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from xmas_pipeline_tests.support.stores import postgres_database

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "upgrade"
VARIANTS = ("sqlite-notion-on", "postgres-notion-off")


@dataclass(frozen=True)
class OldDeployment:
    manifest: dict[str, Any]
    home: Path
    dagster_home: Path
    database_url: str | None  # None: the SQLite file in `home`
    notion: dict[str, Any] | None  # the fake Notion's workspace, when Notion was on


@contextmanager
def old_deployment(variant: str, into: Path) -> Iterator[OldDeployment]:
    manifest = json.loads((FIXTURES / f"{variant}.json").read_text(encoding="utf-8"))
    with tarfile.open(FIXTURES / f"{variant}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    notion_file = into / "notion.json"
    notion = json.loads(notion_file.read_text(encoding="utf-8")) if notion_file.exists() else None
    if manifest["store"] != "postgresql":
        yield OldDeployment(manifest, into / "xmas_home", into / "dagster_home", None, notion)
        return
    with postgres_database() as url:
        engine = sa.create_engine(url)
        try:
            raw = engine.raw_connection()
            try:
                with raw.cursor() as cursor:
                    cursor.execute((into / "store.pg.sql").read_text(encoding="utf-8"))
                raw.commit()
            finally:
                raw.close()
        finally:
            engine.dispose()
        yield OldDeployment(manifest, into / "xmas_home", into / "dagster_home", url, notion)
