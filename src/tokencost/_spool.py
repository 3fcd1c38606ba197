"""Spool files: where ledger rows wait when the database cannot be written.

One JSON line per row. Appenders hold an exclusive ``flock`` while writing; a merger takes the
same lock and renames the live file aside (atomic), so a line is never appended to a file that is
already being merged and nothing is read twice into the ledger (merges are ``INSERT OR IGNORE``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["append_line", "take_spool", "take_spool_safe", "read_spool"]



def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends of one short line are effectively atomic; merge renames
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


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
