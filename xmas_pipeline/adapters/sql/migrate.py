"""`xmas-pipeline store migrate`: the store's tables, its generated keys and its grants.

In production the processes that use the store may not create anything (their roles have
no CREATE right): this step, run as the store's owner before them, creates or upgrades
every table, makes the unsubscribe signing key the intake reads, and gives each role its
tables (`privileges.py`). It is idempotent: run it on every deploy.
"""

from __future__ import annotations

from xmas_pipeline.adapters.sql.engine import SqlDatabase, make_engine
from xmas_pipeline.adapters.sql.privileges import apply_grants
from xmas_pipeline.adapters.sql.secrets import UNSUBSCRIBE, SqlSecrets
from xmas_pipeline.adapters.sql.webhook_ids import SqlWebhookIds


def migrate_store(database_url: str) -> list[str]:
    """Create or upgrade everything; what was granted (nothing on SQLite)."""
    engine = make_engine(database_url)
    try:
        SqlDatabase(database_url, engine).prepare()
        SqlWebhookIds(database_url, engine).prepare()
        # The intake only reads the key, so it must exist before the first unsubscribe.
        # (A configured XMAS_UNSUBSCRIBE_SECRET still wins where it is set.)
        SqlSecrets(database_url, engine).get_or_create(UNSUBSCRIBE)
        if engine.dialect.name != "postgresql":
            return []
        with engine.begin() as conn:
            return apply_grants(conn)
    finally:
        engine.dispose()
