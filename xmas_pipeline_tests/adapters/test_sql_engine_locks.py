"""A second engine on the same SQLite file keeps the first one's locks.

POSIX locks belong to the process and go when any descriptor of the file is closed: an
engine that opened and closed the database file to set its permissions dropped the lock
an open connection of another engine held, so another process could reset the WAL under
it (sends written but lost, "database disk image is malformed" in `xmas-pipeline dev`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import make_engine


def locks_on(path: Path) -> list[str]:
    """This process's POSIX locks on `path` (from /proc/locks: pid, then dev:inode), each
    without its place in the list (which moves as other processes lock and unlock)."""
    inode, pid = os.stat(path).st_ino, os.getpid()
    found = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter's line
            continue
        if fields[4] == str(pid) and fields[5].rsplit(":", 1)[1] == str(inode):
            found.append(" ".join(fields[1:]))
    return found


def test_another_engine_keeps_an_open_connections_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = make_engine(f"sqlite:///{path}")
    with first.begin() as conn:
        conn.execute(sa.text("create table t (x integer)"))
    with first.connect() as conn:
        conn.execute(sa.text("select * from t")).all()
        held = locks_on(path)
        assert held  # in WAL mode an open connection holds a shared lock on the file
        make_engine(f"sqlite:///{path}").dispose()
        assert locks_on(path) == held
    first.dispose()


def test_a_new_database_file_is_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "home" / "state.db"
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # an older file: tightened too
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
