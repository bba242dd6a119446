"""A stat-keyed digest cache: an unchanged file is never hashed twice.

The key is a fingerprint of everything that changes when a file's content can
have changed — real path, device, inode, size, mtime and ctime (ctime cannot be
set back by tools that preserve mtime) — plus whatever else the cached digest
depends on (a layer's tar headers). Entries live in one SQLite file under
``$MODELREG_HOME/cache`` and are safe to share between processes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from .digest import sha256_file


def stat_fingerprint(path: Path) -> str:
    info = os.stat(path)
    return (
        f"{os.path.realpath(path)}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0"
        f"{info.st_mtime_ns}\0{info.st_ctime_ns}"
    )


def fingerprint(kind: str, files: Iterable[Path], extra: str = "") -> str:
    hasher = hashlib.sha256(f"{kind}\0{extra}\0".encode())
    for path in files:
        hasher.update(stat_fingerprint(path).encode("utf-8", "surrogateescape") + b"\n")
    return hasher.hexdigest()


class DigestCache:
    """Maps fingerprints to digests. ``DigestCache(None)`` remembers nothing."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection | None:
        if self._path is None:
            return None
        if self._db is None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self._path, timeout=10, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                # a cache: losing the last writes to a power cut is fine, an fsync per
                # commit (several per push) is not; WAL stays consistent either way
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS digests"
                    " (key TEXT PRIMARY KEY, digest TEXT NOT NULL)"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS locations (digest TEXT NOT NULL,"
                    " store TEXT NOT NULL, repository TEXT NOT NULL, seen REAL NOT NULL,"
                    " PRIMARY KEY (digest, store, repository))"
                )
                self._db = db
            except (sqlite3.Error, OSError):
                # a cache that cannot open is a cache that misses: never fail the push
                self._path = None
                return None
        return self._db

    def get(self, key: str) -> str | None:
        with self._lock:
            db = self._connect()
            if db is None:
                return None
            try:
                row = db.execute("SELECT digest FROM digests WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                return None
        return row[0] if row else None

    def put(self, key: str, digest: str) -> None:
        with self._lock:
            db = self._connect()
            if db is None:
                return
            try:
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO digests (key, digest) VALUES (?, ?)", (key, digest)
                    )
            except sqlite3.Error:
                pass

    def remember_location(self, digest: str, store: str, repository: str) -> None:
        """Note that ``repository`` of ``store`` holds ``digest`` (a mount source later)."""
        with self._lock:
            db = self._connect()
            if db is None:
                return
            try:
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO locations VALUES (?, ?, ?, julianday('now'))",
                        (digest, store, repository),
                    )
            except sqlite3.Error:
                pass

    def locations(self, digest: str, store: str, limit: int = 3) -> list[str]:
        """Repositories of ``store`` that held ``digest`` when last seen, newest first."""
        with self._lock:
            db = self._connect()
            if db is None:
                return []
            try:
                rows = db.execute(
                    "SELECT repository FROM locations WHERE digest = ? AND store = ?"
                    " ORDER BY seen DESC LIMIT ?",
                    (digest, store, limit),
                ).fetchall()
            except sqlite3.Error:
                return []
        return [row[0] for row in rows]

    def file_sha256(self, path: Path) -> str:
        """The sha256 of a file's bytes, from the cache when the file is unchanged."""
        key = fingerprint("file", [path])
        cached = self.get(key)
        if cached:
            return cached
        digest = sha256_file(path)
        if fingerprint("file", [path]) == key:
            self.put(key, digest)
        return digest

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
