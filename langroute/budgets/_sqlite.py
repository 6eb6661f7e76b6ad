"""The embedded spend store: one SQLite file, safe for many processes on one machine.

WAL journal (readers never block the writer); every write is one ``BEGIN IMMEDIATE``
transaction, which takes the file's write lock before reading, so check-and-reserve is atomic
across processes; ``busy_timeout`` makes a process wait its turn instead of failing.
``synchronous=NORMAL``: a committed cost survives the process being killed (``kill -9``); only
a power loss may drop the last transactions (WAL's documented trade-off).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from .._exceptions import BudgetStoreError
from ._store import Account, AccountState, SpendStore

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS langroute_budget_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS langroute_budget_accounts (
    scope TEXT NOT NULL, window TEXT NOT NULL, period TEXT NOT NULL,
    limit_nano INTEGER, spent_nano INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, window, period));
CREATE TABLE IF NOT EXISTS langroute_budget_holds (
    hold_id TEXT PRIMARY KEY, scope TEXT NOT NULL, window TEXT NOT NULL, period TEXT NOT NULL,
    amount_nano INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS langroute_budget_holds_account
    ON langroute_budget_holds (scope, window, period, expires_at);
"""
_COLUMNS = {
    "langroute_budget_accounts": ["scope", "window", "period", "limit_nano", "spent_nano"],
    "langroute_budget_holds": ["hold_id", "scope", "window", "period", "amount_nano",
                               "expires_at"],
}
_WHERE = "scope = ? AND window = ? AND period = ?"


class SQLiteStore(SpendStore):
    """Spend kept in a SQLite file (``sqlite:///relative.db`` or ``sqlite:////abs/path.db``).

    Parameters
    ----------
    url : str
    create : bool, default=True
        Create the file (its folder must exist); False requires an existing store.
    timeout : float, default=30.0
        Seconds a write waits for another process's transaction.
    """

    def __init__(self, url: str, *, create: bool = True, timeout: float = 30.0) -> None:
        self.url = url
        self.path = Path(url[len("sqlite:///"):])
        if not str(self.path) or self.path.name == "":
            raise BudgetStoreError(f"{url!r} names no file; use 'sqlite:///path/spend.db'")
        if not self.path.parent.is_dir():
            raise BudgetStoreError(
                f"cannot open spend store {url!r}: folder {self.path.parent} does not exist")
        self._lock = threading.Lock()
        self._timeout = timeout
        if not create:
            self._require_store()
        self._conn = self._connect()
        self._pid = os.getpid()
        try:
            self._check_schema(create)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise BudgetStoreError(
                f"{self.path} is not a usable langroute spend store: {exc}") from exc
        except BudgetStoreError:
            self._conn.close()
            raise

    def _require_store(self) -> None:
        """``create=False`` (``langroute spend`` reads, never creates): a file that holds no
        spend store is refused after a read-only look, before the connection that switches a
        file to WAL (which writes a header into an empty one) is opened."""
        if not self.path.is_file():
            raise BudgetStoreError(f"spend store {self.url!r}: file {self.path} does not exist")
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=self._timeout)) as conn:
                tables = {row[0] for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise BudgetStoreError(
                f"{self.path} is not a usable langroute spend store: {exc}") from exc
        if "langroute_budget_meta" not in tables:
            raise BudgetStoreError(f"{self.path} holds no langroute spend store")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise BudgetStoreError(f"cannot open spend store {self.url!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BudgetStoreError(
                    f"spend store {self.url!r}: cannot use WAL (mode {mode!r})")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BudgetStoreError(
                f"{self.path} is not a usable langroute spend store: {exc}") from exc
        except BudgetStoreError:
            conn.close()
            raise
        return conn

    @property
    def _db(self) -> sqlite3.Connection:
        return self._conn

    def _locked(self) -> threading.Lock:
        """This process's lock, after making sure the connection is this process's: a forked
        child opens its own (SQLite connections must not cross a fork) and a fresh lock (the
        parent's may have been held at the fork)."""
        if os.getpid() != self._pid:
            self._lock = threading.Lock()
            self._conn = self._connect()
            self._pid = os.getpid()
        return self._lock

    def _check_schema(self, create: bool) -> None:
        tables = {row[0] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = {"langroute_budget_meta", *_COLUMNS}
        if not tables & ours and not create:
            raise BudgetStoreError(f"{self.path} holds no langroute spend store")
        if tables & ours != ours:
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("INSERT OR IGNORE INTO langroute_budget_meta VALUES "
                                 "('schema_version', ?)", (SCHEMA_VERSION,))
        row = self._db.execute("SELECT value FROM langroute_budget_meta "
                               "WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise BudgetStoreError(
                f"{self.path}: spend store schema version {None if row is None else row[0]!r}, "
                f"this langroute reads version {SCHEMA_VERSION}")
        for table, columns in _COLUMNS.items():
            found = [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]
            if found != columns:
                raise BudgetStoreError(
                    f"{self.path}: table {table} has columns {found}, expected {columns}")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One atomic write: BEGIN IMMEDIATE holds the file's write lock from the first read."""
        with self._locked():
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"spend store {self.url!r}: {exc}") from exc
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    # The failed transaction was already rolled back by SQLite.
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise BudgetStoreError(f"spend store {self.url!r}: {exc}") from exc
                if isinstance(exc, OverflowError):
                    # an amount past SQLite's signed 64-bit INTEGER, refused when it is bound
                    raise BudgetStoreError(
                        f"spend store {self.url!r}: an amount does not fit SQLite's 64-bit "
                        f"integers ({exc})") from exc
                raise

    def _purge(self, account: Account, now: float) -> None:
        self._db.execute(f"DELETE FROM langroute_budget_holds WHERE {_WHERE} AND expires_at <= ?",
                         (*_key(account), now))

    def _state(self, account: Account, now: float) -> AccountState:
        row = self._db.execute(
            f"SELECT limit_nano, spent_nano FROM langroute_budget_accounts WHERE {_WHERE}",
            _key(account)).fetchone()
        reserved = self._db.execute(
            f"SELECT COALESCE(SUM(amount_nano), 0) FROM langroute_budget_holds "
            f"WHERE {_WHERE} AND expires_at > ?", (*_key(account), now)).fetchone()[0]
        if row is None:
            return AccountState(account, None, 0, int(reserved))
        return AccountState(account, row[0], int(row[1]), int(reserved))

    def reserve(self, account: Account, *, limit_nano: int, amount_nano: int, hold_id: str,
                now: float, expires_at: float, enforce: bool = True
                ) -> tuple[bool, AccountState]:
        with self._write():
            self._purge(account, now)
            self._db.execute(
                "INSERT INTO langroute_budget_accounts (scope, window, period, limit_nano) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (scope, window, period) "
                "DO UPDATE SET limit_nano = excluded.limit_nano", (*_key(account), limit_nano))
            before = self._state(account, now)
            if enforce and before.spent_nano + before.reserved_nano + amount_nano > limit_nano:
                return False, before
            self._db.execute("INSERT INTO langroute_budget_holds VALUES (?, ?, ?, ?, ?, ?)",
                             (hold_id, *_key(account), amount_nano, expires_at))
            return True, self._state(account, now)

    def commit(self, account: Account, *, hold_id: str, cost_nano: int, now: float
               ) -> AccountState:
        with self._write():
            self._db.execute("DELETE FROM langroute_budget_holds WHERE hold_id = ?", (hold_id,))
            self._db.execute(
                "INSERT INTO langroute_budget_accounts (scope, window, period, spent_nano) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (scope, window, period) "
                "DO UPDATE SET spent_nano = spent_nano + excluded.spent_nano",
                (*_key(account), cost_nano))
            return self._state(account, now)

    def release(self, account: Account, *, hold_id: str, now: float) -> AccountState:
        with self._write():
            self._db.execute("DELETE FROM langroute_budget_holds WHERE hold_id = ?", (hold_id,))
            return self._state(account, now)

    def state(self, account: Account, *, now: float) -> AccountState:
        with self._locked():
            try:
                return self._state(account, now)
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"spend store {self.url!r}: {exc}") from exc

    def accounts(self, *, now: float) -> list[AccountState]:
        with self._locked():
            try:
                rows = self._db.execute(
                    "SELECT scope, window, period FROM langroute_budget_accounts UNION "
                    "SELECT scope, window, period FROM langroute_budget_holds").fetchall()
                return [self._state(Account(*row), now) for row in sorted(rows)]
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"spend store {self.url!r}: {exc}") from exc

    def close(self) -> None:
        with self._locked():
            self._conn.close()


def _key(account: Account) -> tuple[str, str, str]:
    return account.scope, account.window, account.period
