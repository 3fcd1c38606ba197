"""Spool files: where ledger rows wait when the database cannot be written.

One JSON line per row. Appenders hold an exclusive ``flock`` while writing; a merger takes the
same lock and renames the live file aside (atomic), so a line is never appended to a file that is
already being merged and nothing is read twice into the ledger (merges skip row ids already present).

Rows SQLite can never take (:func:`row_problem`, or refused by a constraint) are not retried
forever: the ledger moves them to ``<spool>.bad``, one JSON line each, for a human to fix.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Mapping

from .record import COLUMNS, CallRecord

__all__ = ["append_line", "take_spool", "take_spool_safe", "read_spool", "insert_spooled", "row_problem",
           "row_params", "record_params", "params_problem", "dumps_row", "loose_line", "live_name"]

_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
# Skips a row already merged (same id) but, unlike INSERT OR IGNORE, still fails on a NOT NULL
# violation, so a broken row is set aside instead of silently vanishing.
_INSERT_MERGE = _INSERT + " ON CONFLICT(id) DO NOTHING"
_SQLITE_INT = (-(2**63), 2**63)


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one short line are effectively atomic; merge renames
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def append_line(path: Path, line: str) -> None:
    """Append one JSON line durably. A concurrent merge renames the file away under the lock; if
    that happened while we waited, reopen so the line lands in the live spool."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            if not _same_file(fd, path):
                continue
            os.write(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)  # closing releases the flock
    raise OSError(f"spool {path} keeps being replaced")


def take_spool(path: Path) -> Path | None:
    """Atomically move the live spool aside for merging; None if there is none."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        _lock(fd)
        if not _same_file(fd, path):
            return None
        taken = path.with_name(f"{path.name}.merging-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.replace(path, taken)
        return taken
    finally:
        os.close(fd)


def take_spool_safe(path: Path) -> Path | None:
    try:
        return take_spool(path)
    except OSError:
        return None


def read_spool(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows, bad = [], []
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:  # merged and removed by another process meanwhile
        return rows, bad
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad.append(line.rstrip("\n"))  # a torn last line from a crash: kept aside, not guessed
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                rows.append(row)
            else:
                bad.append(line.rstrip("\n"))
    return rows, bad


# ---------------------------------------------------------------------------------- spooled rows


def insert_spooled(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """Insert spooled rows in one transaction; return the ``(row, why)`` SQLite can never take.

    Row by row: a refused row fails alone (SQLite rolls back that statement, not the transaction),
    so it never blocks the rows behind it. Any other error rolls back everything and propagates.
    """
    rejected: list[tuple[dict[str, Any], str]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for r in rows:
            problem = row_problem(r)
            if problem is None:
                try:
                    conn.execute(_INSERT_MERGE, row_params(r))
                    continue
                except (sqlite3.IntegrityError, OverflowError, sqlite3.InterfaceError) as exc:
                    problem = str(exc)
            rejected.append((r, problem))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return rejected


def dumps_row(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str, separators=(",", ":"))


def loose_line(rec: Any) -> str:
    """Whatever we were given, as one JSON line for the ``.bad`` file."""
    try:
        return dumps_row(rec.to_row() if isinstance(rec, CallRecord) else dict(rec))
    except Exception:
        return dumps_row({"record": repr(rec)})


def live_name(name: str) -> str:
    return name.split(".merging-", 1)[0]


def row_params(row: Mapping[str, Any]) -> list[Any]:
    return _with_defaults([row.get(c) for c in COLUMNS])


_RECORD_VALUES = operator.attrgetter(*COLUMNS)
_DEFAULTS = tuple((COLUMNS.index(col), default) for col, default in (("streamed", 0), ("tags", "{}")))
_REQUIRED = tuple(COLUMNS.index(col) for col in ("started_at", "endpoint"))


def record_params(rec: CallRecord) -> list[Any]:
    """A record's values in column order (one C-level getter: this runs on every logged call)."""
    return _with_defaults(list(_RECORD_VALUES(rec)))


def _with_defaults(params: list[Any]) -> list[Any]:
    # columns with a default in the schema: a hand-made row may leave them out
    for i, default in _DEFAULTS:
        if params[i] is None:
            params[i] = default
    return params


def row_problem(row: Mapping[str, Any]) -> str | None:
    """Why SQLite could never store ``row`` as a ``calls`` row, or None."""
    return params_problem(row_params(row))


def params_problem(params: list[Any]) -> str | None:
    """:func:`row_problem` for values already in column order."""
    for i in _REQUIRED:
        if params[i] is None:
            return f"{COLUMNS[i]} is missing"
    for col, value in zip(COLUMNS, params):
        kind = type(value)
        if value is None or kind is str or kind is float:
            continue
        if kind is int or isinstance(value, int):
            if not _SQLITE_INT[0] <= value < _SQLITE_INT[1]:
                shown = str(value)
                return f"{col}={shown[:30] + '...' if len(shown) > 30 else shown} is too large for SQLite"
            continue
        if isinstance(value, (str, float)):
            continue
        return f"{col} is a {type(value).__name__}, not a number or text"
    return None
