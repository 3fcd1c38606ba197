"""Spool files: where ledger rows wait when the database cannot be written.

One JSON line per row. Appenders hold an exclusive ``flock`` while writing; a merger takes the
same lock and renames the live file aside (atomic), so a line is never appended to a file that is
already being merged and nothing is read twice into the ledger (merges skip row ids already present).

Rows SQLite can never take (:func:`row_problem`, or refused by a constraint) are not retried
forever: the ledger moves them to ``<spool>.bad``, one JSON line each, for a human to fix.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import sqlite3
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from .record import COLUMNS, CallRecord

__all__ = ["LedgerWarning", "Spools", "warn_once", "describe", "params_of", "append_line", "take_spool", "take_spool_safe", "read_spool", "insert_spooled", "row_problem",
           "merge_spools", "row_params", "record_params", "params_problem", "dumps_row", "loose_line", "live_name"]

_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
# Skips a row already merged (same id) but, unlike INSERT OR IGNORE, still fails on a NOT NULL
# violation, so a broken row is set aside instead of silently vanishing.
_INSERT_MERGE = _INSERT + " ON CONFLICT(id) DO NOTHING"
_SQLITE_INT = (-(2**63), 2**63)


class LedgerWarning(UserWarning):
    """The ledger could not be written; rows were spooled or set aside in a ``.bad`` file (or, in
    the worst case, lost), or a call's reported usage was invalid and was not stored."""

    __module__ = "tokencost.ledger"  # where users import it from


_warn_lock = threading.Lock()
_warned: set[tuple[int, str]] = set()  # (pid, kind): one warning per kind of trouble per process


def warn_once(message: str, kind: str = "spool") -> None:
    with _warn_lock:
        key = (os.getpid(), kind)
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(LedgerWarning(message), stacklevel=5)


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


def _append_first(targets: list[Path], text: str) -> tuple[Path | None, list[str]]:
    """Append ``text`` to the first of ``targets`` that takes it: (that file or None, the errors)."""
    errors = []
    for target in targets:
        try:
            append_line(target, text)
        except Exception as exc:
            errors.append(f"{target}: {exc}")
            continue
        return target, errors
    return None, errors


def merge_spools(spools: "Spools", conn: sqlite3.Connection, retry: Callable[[Callable[[], Any]], Any]) -> int:
    """Merge every spool file into ``conn``, each row exactly once; returns rows merged.
    ``retry`` runs a function again while SQLite says busy (the ledger's own policy)."""
    merged = 0
    for path in spools.files():
        try:
            merged += _merge_file(spools, conn, path, retry)
        except Exception:
            # The database is busy/broken right now: the file stays (as .merging-*) and the next
            # open merges it. One bad row cannot land here: _merge_file sets those aside.
            continue
    return merged


def _merge_file(spools: "Spools", conn: sqlite3.Connection, path: Path, retry: Callable[[Callable[[], Any]], Any]) -> int:
    taken = path if ".merging-" in path.name else take_spool_safe(path)
    if taken is None or not taken.exists():
        return 0
    rows, torn = read_spool(taken)
    rejected: list[tuple[dict[str, Any], str]] = []
    if rows:
        retry(lambda: rejected.extend(insert_spooled(conn, rows)))
    aside = torn + [dumps_row(r) for r, _ in rejected]
    if aside:
        reasons = [f"{len(torn)} unreadable line(s)"] if torn else []
        if rejected:
            reasons.append(f"{rejected[0][1]}" + (f" and {len(rejected) - 1} more" if len(rejected) > 1 else ""))
        if not spools.set_aside(aside, "; ".join(reasons), near=taken):
            return len(rows) - len(rejected)  # keep the taken file: its rows stay recoverable
    try:
        taken.unlink()
    except FileNotFoundError:
        pass  # another process merged the same leftover file: ON CONFLICT made it harmless
    return len(rows) - len(rejected)


class Spools:
    """The spool files of the ledger at ``db_path``: beside it, else in the user cache dir."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    @property
    def path(self) -> Path:
        """The spool beside the database: ``<db>.spool.jsonl``."""
        return self.db_path.with_name(self.db_path.name + ".spool.jsonl")

    @property
    def fallback_path(self) -> Path:
        """Where rows go when the database's directory is not writable either."""
        import platformdirs

        key = hashlib.sha256(str(self.db_path.resolve()).encode()).hexdigest()[:16]
        base = Path(platformdirs.user_cache_dir("tokencost", appauthor=False)) / "spool"
        return base / f"{self.db_path.name}-{key}.spool.jsonl"

    def live(self) -> list[Path]:
        out: list[Path] = []
        for where in (lambda: self.path, lambda: self.fallback_path):
            try:
                out.append(where())
            except Exception:  # e.g. a path with no file name: no spool can live beside it
                pass
        return out

    def files(self) -> list[Path]:
        """Every spool file, including ones a merge took aside and did not finish."""
        out: list[Path] = []
        for live in self.live():
            try:
                out.extend(sorted(live.parent.glob(live.name + ".merging-*")))
            except OSError:
                pass
            out.append(live)
        return out

    def pending(self) -> list[tuple[Path, int]]:
        """Spool files holding rows that wait to be merged, with how many rows each holds."""
        out = []
        for path in self.files():
            try:
                if path.is_file():
                    rows, _ = read_spool(path)
                    if rows:
                        out.append((path, len(rows)))
            except OSError:
                pass
        return out

    def keep(self, line: str, cause: str) -> None:
        """Append a row the database could not take (``cause`` says why) to the first spool that
        works; one warning per process, or a loud warning with the row itself if none works."""
        target, errors = _append_first(self.live(), line)
        if target is not None:
            warn_once(
                f"tokencost could not write the ledger {self.db_path} ({cause}); "
                f"calls are being kept in {target} and will be merged the next time the ledger opens"
            )
            return
        # Both spools failed: the row cannot be kept. Say so every time, with the row itself, so
        # nothing is ever lost silently.
        warnings.warn(LedgerWarning(
            f"tokencost LOST a ledger row: {cause}; spools failed ({'; '.join(errors)}); row: {line}"), stacklevel=4)

    def set_aside(self, lines: list[str], reason: str, near: Path | None = None) -> bool:
        """Keep rows that can never be inserted in ``<spool>.bad`` (beside ``near``, else beside the
        database, else in the cache dir) so a human can fix them. True once they are safely kept."""
        spools = ([near] if near is not None else []) + self.live()
        bad_files = [spool.with_name(live_name(spool.name) + ".bad") for spool in spools]
        target, errors = _append_first(bad_files, "\n".join(lines))
        if target is not None:
            warn_once(
                f"tokencost set aside {len(lines)} ledger row{'s' if len(lines) != 1 else ''} that cannot be "
                f"stored ({reason}) in {target}; the other calls are recorded normally", kind="bad")
            return True
        warnings.warn(LedgerWarning(
            f"tokencost LOST {len(lines)} ledger row(s) that cannot be stored ({reason}); could not keep them "
            f"aside ({'; '.join(errors)}); rows: {' '.join(lines)}"), stacklevel=4)
        return False


def params_of(rec: CallRecord | Mapping[str, Any]) -> list[Any]:
    """The values to insert, in column order; ValueError for a record that is not a row at all."""
    if isinstance(rec, CallRecord):
        params = record_params(rec)
    else:
        row = dict(rec)
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        params = row_params(row)
    if not isinstance(params[0], str) or not params[0]:
        raise ValueError("record has no id")
    return params


def describe(path: Path, exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    low = text.lower()
    if "not a database" in low or "malformed" in low:
        return f"ledger {path} is not a readable SQLite database ({text}); move it aside or pass --db"
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError):
        return f"ledger {path} is read-only ({text})"
    if "disk is full" in low or "no space" in low:
        return f"disk full writing ledger {path} ({text})"
    if "locked" in low or "busy" in low:
        return f"ledger {path} stayed locked by another process ({text})"
    if "unable to open" in low:
        return f"cannot open ledger {path} ({text}); check the directory exists and is writable"
    return f"cannot use ledger {path} ({text})"
