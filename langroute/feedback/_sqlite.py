"""The embedded feedback store: one SQLite file in WAL mode (``sqlite:///path``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .._exceptions import FeedbackError, FeedbackStoreError
from ._records import DecisionRecord, FeedbackEvent
from ._store import FeedbackStore

__all__ = ["SQLiteFeedbackStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
    record TEXT NOT NULL
);
"""
#: Ids looked up per query (SQLite's default limit on bound parameters is 999 or more).
_ID_BATCH = 500


class SQLiteFeedbackStore(FeedbackStore):
    """Decisions and events in a SQLite file (WAL journal; safe across processes).

    Parameters
    ----------
    path : str or Path
        The database file; created (with its tables) if missing. Its folder must exist.
    timeout : float, default=30.0
        Seconds to wait for another process's write lock before failing.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        if not self.path.parent.is_dir():
            raise FeedbackStoreError(f"folder {self.path.parent} of the feedback store missing")
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False,
                                         isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise FeedbackStoreError(f"cannot open the feedback store {self.url}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> SQLiteFeedbackStore:
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc or not path or path == "/":
            raise FeedbackError(
                f"a SQLite feedback store URL is sqlite:///relative/path or "
                f"sqlite:////absolute/path, got {url!r}"
            )
        # sqlite:///x.db names the relative path x.db, sqlite:////tmp/x.db the absolute one.
        return cls(path[1:])

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise FeedbackStoreError(f"feedback store {self.url} failed: {exc}") from exc

    def _insert_decision(self, record: DecisionRecord) -> bool:
        try:
            self._run("INSERT INTO decisions (decision_id, record) VALUES (?, ?)",
                      (record.decision_id, record.to_json()))
        except sqlite3.IntegrityError:
            return False
        return True

    def _get_decisions(self, decision_ids: Sequence[str]) -> list[DecisionRecord | None]:
        found: dict[str, DecisionRecord] = {}
        ids = list(decision_ids)
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._run(
                f"SELECT decision_id, record FROM decisions WHERE decision_id IN ({marks})", batch
            )
            found.update((key, DecisionRecord.from_json(text)) for key, text in rows)
        return [found.get(i) for i in ids]

    def _append_event(self, event: FeedbackEvent) -> None:
        try:
            self._run("INSERT INTO events (decision_id, record) VALUES (?, ?)",
                      (event.decision_id, event.to_json()))
        except sqlite3.IntegrityError as exc:
            raise FeedbackStoreError(
                f"feedback store {self.url} refused an event for {event.decision_id!r}: {exc}"
            ) from exc

    def _read_events(self, start: int) -> list[FeedbackEvent]:
        rows = self._run("SELECT record FROM events ORDER BY position LIMIT -1 OFFSET ?",
                         (start,))
        return [FeedbackEvent.from_json(text) for (text,) in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
