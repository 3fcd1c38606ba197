"""The spend ledger: one SQLite file, one row per real API call.

* Where: ``$TOKENCOST_DB``, else ``platformdirs.user_data_dir("tokencost")/ledger.db``; ``db=`` /
  ``--db`` override both (:func:`default_db_path`).
* Schema: named, append-only migrations (``sqlite_utils.Migrations``, in ``_ledger_schema.py``)
  applied on every open that finds one pending. Never edit a released migration; append.
* Concurrency: WAL journal, ``busy_timeout`` and a retry loop, so many threads and processes
  append to one file and "database is locked" never reaches the app.
* Durability: each row is its own committed transaction before :meth:`Ledger.record` returns, so a
  hard kill loses no row whose call had returned (``synchronous=NORMAL`` in WAL mode survives a
  process crash; only a power cut can drop the last commits, never corrupt the file).
* Failure: :meth:`Ledger.record` never raises. If the database cannot be written (read-only,
  disk full, corrupt, locked for too long) the row is appended as one JSON line to a spool file
  beside the database (or, if that directory is unwritable, in the user cache dir), ONE
  :class:`LedgerWarning` is emitted per process, and the next successful open merges the spool
  exactly once (a row id already present is skipped; the spool is renamed away atomically before reading;
  see ``_spool.py``). The merge goes row by row inside one transaction: a row that can never be
  inserted (a value SQLite cannot hold, a missing required column) is moved to ``<spool>.bad``
  beside it with one warning naming that file, so it never blocks the rows behind it. A record
  that is itself unusable goes to the same ``.bad`` file straight away.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ._ledger_schema import MIGRATION_SET, MIGRATIONS, apply_migrations
from ._spool import LedgerWarning, Spools, describe, dumps_row, loose_line, merge_spools, params_of, params_problem
from .errors import LedgerError, UsageError
from .record import COLUMNS, CallRecord, iso_utc

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = [
    "Ledger",
    "LedgerWarning",
    "default_db_path",
    "open_ledger",
    "parse_since",
    "MIGRATIONS",
    "MIGRATION_SET",
    "apply_migrations",
]

_BUSY_MS = 5000


def default_db_path() -> Path:
    """``$TOKENCOST_DB`` or ``<user data dir>/tokencost/ledger.db``."""
    env = os.environ.get("TOKENCOST_DB")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("tokencost", appauthor=False)) / "ledger.db"


# ---------------------------------------------------------------------------------- the ledger

_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class Ledger:
    """The ledger at ``path`` (``None`` -> :func:`default_db_path`). Opening is lazy: creating a
    ``Ledger`` never touches the disk, so it can never break the caller.

    ``timeout`` bounds how long one :meth:`record` waits on a locked database before spooling.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 15.0) -> None:
        self._given = path
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.timeout = float(timeout)
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._degraded_until = 0.0  # after a failure, spool straight away for a little while
        self._readonly = False
        self.spools = Spools(self.path)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- spools --------------------------------------------------------------------------------
    @property
    def spool_path(self) -> Path:
        """The spool beside the database: ``<db>.spool.jsonl``."""
        return self.spools.path

    @property
    def fallback_spool_path(self) -> Path:
        """Where rows go when the database's directory is not writable either."""
        return self.spools.fallback_path

    def spooled(self) -> list[tuple[Path, int]]:
        """Spool files holding rows that wait to be merged, with how many rows each holds."""
        return self.spools.pending()

    def _spool(self, row: dict[str, Any], exc: BaseException) -> None:
        self.spools.keep(dumps_row(row), describe(self.path, getattr(self, "_last_error", exc)))

    def _set_aside(self, lines: list[str], reason: str) -> bool:
        return self.spools.set_aside(lines, reason)

    # -- opening --------------------------------------------------------------------------------
    def open(self, *, must_exist: bool = False) -> "Ledger":
        """Open (creating and migrating as needed), merging any spool. Raises LedgerError."""
        with self._lock:
            self._check_path()
            if must_exist and not self.path.exists():
                waiting = self.spooled()
                if waiting:
                    n = sum(count for _, count in waiting)
                    raise LedgerError(
                        f"no ledger at {self.path} yet, but {n} call{'s' if n != 1 else ''} wait in "
                        f"{', '.join(str(p) for p, _ in waiting)} (the ledger could not be written); "
                        "they are merged into it the next time it opens successfully"
                    )
                raise LedgerError(
                    f"no ledger at {self.path} — nothing has been recorded there yet; pass --db PATH "
                    "or set TOKENCOST_DB (`tokencost db path` shows the default)"
                )
            try:
                self._ensure_open()
            except LedgerError:
                raise
            except (sqlite3.Error, OSError) as exc:
                raise LedgerError(describe(self.path, exc)) from None
        return self

    def _check_path(self) -> None:
        """A path that can never be a ledger file is the caller's mistake: say so plainly."""
        if self._given is not None and not str(self._given).strip():
            raise UsageError("--db is empty; give the ledger file's path (or leave --db out for the default)")
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a directory; give a file path (e.g. {self.path / 'ledger.db'})")

    def _ensure_open(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._check_path()
        # after a fork the parent's connection must not be used (or closed) by the child
        self._conn, self._pid = None, os.getpid()
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        busy_ms = int(min(_BUSY_MS, self.timeout * 1000))
        conn = sqlite3.connect(str(self.path), timeout=busy_ms / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._readonly = False
        try:
            merge_spools(self.spools, conn, self._retry)
        except Exception:  # never a reason to fail the open: the spool waits for the next one
            pass
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if not self._pending(conn):
            return  # the common case: no sqlite_utils import (it pulls in pandas when installed)
        from sqlite_utils import Database

        db = Database(conn)

        def run() -> None:
            # BEGIN IMMEDIATE takes the write lock first, so two processes creating the same new
            # file cannot both try to apply the same migration.
            conn.execute("BEGIN IMMEDIATE")
            try:
                apply_migrations(db)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._retry(run)

    @staticmethod
    def _pending(db: "Database | sqlite3.Connection") -> bool:
        try:
            rows = db.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                              [MIGRATION_SET]).fetchall()
        except sqlite3.OperationalError:
            return True  # no migrations table yet
        return {r[0] for r in rows} != {name for name, _ in MIGRATIONS}

    def _retry(self, fn: Any) -> Any:
        """Run ``fn`` retrying while SQLite says busy/locked, up to ``self.timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _open_readonly(self) -> sqlite3.Connection:
        """For reading a ledger we cannot write (read-only file or directory)."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_MS / 1000, check_same_thread=False)
        conn.execute("SELECT 1 FROM calls LIMIT 0")
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- writing --------------------------------------------------------------------------------
    def record(self, rec: CallRecord | Mapping[str, Any]) -> None:
        """Append one row. Never raises: on failure the row is spooled and one warning emitted;
        a row that could never be stored is set aside in ``<spool>.bad`` (also with a warning)."""
        try:
            params = params_of(rec)
            problem = params_problem(params)
        except Exception as exc:  # a malformed record is our bug: still never break the call
            self._set_aside([loose_line(rec)], f"bad record: {exc}")
            return
        if problem is not None:
            self._set_aside([dumps_row(dict(zip(COLUMNS, params)))], problem)
            return
        try:
            with self._lock:
                if time.monotonic() < self._degraded_until:
                    raise _Degraded()
                conn = self._ensure_open()
                try:
                    self._retry(lambda: conn.execute(_INSERT, params))
                except sqlite3.IntegrityError as exc:  # this row, not the database (e.g. a reused id)
                    raise _Rejected(str(exc)) from None
            return
        except _Rejected as exc:
            self._set_aside([dumps_row(dict(zip(COLUMNS, params)))], str(exc))
        except Exception as exc:
            if not isinstance(exc, _Degraded):
                self._fail(exc)
            self._spool(dict(zip(COLUMNS, params)), exc)

    def _fail(self, exc: BaseException) -> None:
        # Do not hammer a broken database on every call: spool directly for a few seconds.
        self._degraded_until = time.monotonic() + 5.0
        self._last_error = exc
        if self._conn is not None and self._pid == os.getpid():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn = None

    # -- reading --------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        try:
            return self._ensure_open()
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc).lower() or "read-only" in str(exc).lower() or "unable to open" in str(exc).lower():
                if self.path.exists():
                    self._readonly = True
                    self._conn = self._open_readonly()
                    return self._conn
            raise

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read query as dicts (raises LedgerError with the path on failure)."""
        with self._lock:
            try:
                conn = self._reader()
                cur = conn.execute(sql, list(params))
                names = [d[0] for d in cur.description or ()]
                return [dict(zip(names, r)) for r in cur.fetchall()]
            except (sqlite3.Error, OSError) as exc:
                raise LedgerError(describe(self.path, exc)) from None

    def calls(self, *, since: datetime | None = None, model: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded calls, newest first. ``model`` matches the model served or requested."""
        where, params = [], []
        if since is not None:
            where.append("started_at >= ?")
            params.append(iso_utc(since))
        if model:
            where.append("(model = ? OR model_requested = ?)")
            params += [model, model]
        sql = "SELECT * FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            if limit < 0:
                raise UsageError(f"--limit must be 0 or more (got {limit})")
            sql += f" LIMIT {int(limit)}"
        return self.query(sql, params)

    def count(self) -> int:
        return int(self.query("SELECT count(*) AS n FROM calls")[0]["n"])


class _Degraded(Exception):
    pass


class _Rejected(Exception):
    """SQLite refused this one row (a constraint); the database itself is fine."""


def open_ledger(path: str | os.PathLike[str] | None = None, *, must_exist: bool = False) -> Ledger:
    """Open (create/migrate) the ledger now; ``must_exist`` -> LedgerError naming the path."""
    return Ledger(path).open(must_exist=must_exist)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` (ago) or an ISO date/datetime (UTC if no zone)."""
    from .filters import parse_when

    return parse_when(text, now=now)
