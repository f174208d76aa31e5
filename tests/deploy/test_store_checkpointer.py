"""The local store's WAL checkpointer (deploy/local/store_checkpointer.py), on plain SQLite files."""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("store_checkpointer", ROOT / "deploy/local/store_checkpointer.py")
store_checkpointer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(store_checkpointer)


def writer(path: Path) -> sqlite3.Connection:
    """A connection like the store's: WAL, and no checkpoint of its own."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
    return conn


def backlog(conn: sqlite3.Connection) -> int:
    """WAL frames not yet copied into the database file."""
    _busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log - done


def test_a_changed_log_is_checkpointed_while_its_writer_stays_open(tmp_path):
    w = writer(tmp_path / "a.sqlite")
    cp = store_checkpointer.Checkpointer(tmp_path, new_database_seconds=0)
    for i in range(200):
        w.execute("INSERT INTO t VALUES (?)", ("x" * 500 + str(i),))
    size = (tmp_path / "a.sqlite").stat().st_size
    assert cp.run_once() == 1
    assert (tmp_path / "a.sqlite").stat().st_size > size  # the pages reached the database file
    assert backlog(w) == 0
    assert cp.run_once() == 0  # nothing changed since: no work
    w.execute("INSERT INTO t VALUES ('y')")
    assert cp.run_once() == 1
    assert w.execute("SELECT count(*) FROM t").fetchone()[0] == 201
    cp.close()
    w.close()


def test_a_dropped_database_is_forgotten_and_never_created_again(tmp_path):
    w = writer(tmp_path / "gone.sqlite")
    w.execute("INSERT INTO t VALUES ('x')")
    cp = store_checkpointer.Checkpointer(tmp_path, new_database_seconds=0)
    assert cp.run_once() == 1
    w.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"gone.sqlite{suffix}").unlink(missing_ok=True)
    assert cp.run_once() == 0
    assert not list(tmp_path.iterdir())
    # created again under the same name: checkpointed through a new connection, not the old file's
    w = writer(tmp_path / "gone.sqlite")
    w.execute("INSERT INTO t VALUES ('y')")
    assert cp.run_once() == 1
    assert backlog(w) == 0
    cp.close()
    w.close()


def test_a_new_database_is_left_to_the_store_for_a_moment(tmp_path):
    """While the store creates a database, a second connection is not welcome."""
    w = writer(tmp_path / "new.sqlite")
    w.execute("INSERT INTO t VALUES ('x')")
    cp = store_checkpointer.Checkpointer(tmp_path, new_database_seconds=0.3)
    assert cp.run_once() == 0
    time.sleep(0.35)
    assert cp.run_once() == 1
    assert backlog(w) == 0
    cp.close()
    w.close()
