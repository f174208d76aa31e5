"""Checkpoint the local store's SQLite write-ahead logs off the commit path.

FerretDB's SQLite backend keeps one database file per database, in WAL mode. Left to SQLite, the
writer whose commit takes the log past ``wal_autocheckpoint`` pages copies the log into the
database file and syncs it while it holds the database's write turn: every other write to that
database waits (50-160 ms here; at 200 requests/s grid's database reached the threshold every few
seconds, and those waits were most of grid's p99). The store's connections are therefore started
with a threshold far above what this process lets a log reach, and this process runs PASSIVE
checkpoints (they take no write turn: writers go on appending while pages are copied) for every
database whose log changed, twice a second.

SQLite's WAL locking works across processes, so this is an ordinary second connection (the
standard library's sqlite3) to files the store writes. Started and stopped with the store by
``infra.py``; if it is not running, the store's own threshold still bounds the log.

    python store_checkpointer.py DATA_DIR [--every SECONDS]
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import time
from pathlib import Path

#: a log unchanged this long loses its connection (bench and test databases come and go)
IDLE_SECONDS = 60.0
#: a database file this new is left to the store: while FerretDB creates a database (file, WAL mode,
#: its metadata table), a second connection checkpointing it was the likeliest cause of the store's
#: rare ``disk I/O error (522)`` (a short read) in ``databaseGetOrCreate`` during the foundation
#: bench, which creates databases while writing hard; a young log is small anyway
NEW_DATABASE_SECONDS = 5.0


class Checkpointer:
    def __init__(self, data: Path, *, new_database_seconds: float = NEW_DATABASE_SECONDS) -> None:
        self.data = data
        self.new_database_seconds = new_database_seconds
        #: database -> (its connection, the inode of the file it opened)
        self._conns: dict[Path, tuple[sqlite3.Connection, int]] = {}
        #: database -> (size, mtime) of its log when it was last checkpointed
        self._seen: dict[Path, tuple[int, int]] = {}
        self._changed_at: dict[Path, float] = {}
        #: (database, inode) -> when this process first saw that file
        self._first_seen: dict[tuple[Path, int], float] = {}

    def run_once(self) -> int:
        """Checkpoint every database whose log changed since; returns how many."""
        now = time.monotonic()
        done = 0
        present = set()
        for db in self.data.glob("*.sqlite"):
            present.add(db)
            try:
                st = (db.parent / (db.name + "-wal")).stat()
                inode = db.stat().st_ino
            except FileNotFoundError:
                continue
            if db in self._conns and self._conns[db][1] != inode:
                self._forget(db)  # dropped and created again: the open connection holds the old file
            if now - self._first_seen.setdefault((db, inode), now) < self.new_database_seconds:
                continue
            mark = (st.st_size, st.st_mtime_ns)
            if self._seen.get(db) == mark:
                if db in self._conns and now - self._changed_at.get(db, now) > IDLE_SECONDS:
                    self._conns.pop(db)[0].close()
                continue
            self._changed_at[db] = now
            try:
                if db not in self._conns:
                    # no busy wait: PASSIVE never waits anyway, and a locked open is tried next round
                    # mode=rw: never create a file (a database dropped since the listing)
                    self._conns[db] = (sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=0,
                                                       isolation_level=None), inode)
                conn = self._conns[db][0]
                started = time.monotonic()
                busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                took = time.monotonic() - started
                if took > 0.05:
                    print(f"{time.strftime('%H:%M:%S')} {db.name}: {copied}/{log} pages in {took * 1000:.0f} ms",
                          flush=True)
                self._seen[db] = mark
                done += 1
            except sqlite3.Error:
                self._forget(db)  # dropped meanwhile, or busy opening: next round
        for db in set(self._seen) - present:
            self._forget(db)
        for key in [k for k in self._first_seen if k[0] not in present]:
            del self._first_seen[key]
        return done

    def _forget(self, db: Path) -> None:
        held = self._conns.pop(db, None)
        if held is not None:
            held[0].close()
        self._seen.pop(db, None)
        self._changed_at.pop(db, None)

    def close(self) -> None:
        for db in list(self._conns):
            self._forget(db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between rounds")
    args = parser.parse_args()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cp = Checkpointer(args.data)
    try:
        while not stopping:
            cp.run_once()
            time.sleep(args.every)
    finally:
        cp.close()


if __name__ == "__main__":
    main()
