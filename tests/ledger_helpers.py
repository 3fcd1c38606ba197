"""Shared helpers for the ledger tests: real records, writer subprocesses, privilege dropping."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.fakeserver import FIXTURES
from tokencost.record import CallRecord, build_record

REPO = Path(__file__).resolve().parent.parent
CHAT_REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What's the weather like in SF?"}]}


def template_record(**kw) -> CallRecord:
    body = json.loads((FIXTURES / "chat_completion_gpt-4o.json").read_text())
    base = dict(endpoint="chat.completions", request=CHAT_REQ, response=body, status=200, error_type=None,
                started_at=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), latency_ms=3.0, streamed=False,
                tags={"feature": "test"}, via="wrap")
    base.update(kw)
    return build_record(**base)


def fresh(rec: CallRecord, **changes) -> CallRecord:
    """The same call with a new id (each row must be its own call)."""
    return dataclasses.replace(rec, id=uuid.uuid4().hex, **changes)


def ids_in(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT id FROM calls")]
    finally:
        con.close()


def call_rows(db: Path) -> list[dict]:
    """Every row of ``calls`` as a dict, oldest first; [] when the file does not exist yet."""
    if not Path(db).exists():
        return []
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM calls ORDER BY started_at, rowid")]
    finally:
        con.close()


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


# A writer process: records N rows and prints each id once record() has returned.
WRITER = r"""
import dataclasses, json, sys, uuid, warnings
warnings.simplefilter("always")
from tests.ledger_helpers import template_record
from tokencost.ledger import Ledger
db, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ledger = Ledger(db)
base = template_record(tags={"writer": tag})
for i in range(n):
    rec = dataclasses.replace(base, id=uuid.uuid4().hex, request_id=f"{tag}-{i}")
    ledger.record(rec)
    print(rec.id, flush=True)
print("DONE", flush=True)
"""


def writer_cmd(db: Path, n: int, tag: str, *, unprivileged: bool = False) -> list[str]:
    cmd = [sys.executable, "-c", WRITER, str(db), str(n), tag]
    return unprivileged_prefix() + cmd if unprivileged else cmd


def writer_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def unprivileged_prefix() -> list[str]:
    """Run a child that obeys file permissions. Root ignores chmod, so drop its DAC override."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a path read-only for the child")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def run_writer(db: Path, n: int, tag: str, *, unprivileged: bool = False, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(writer_cmd(db, n, tag, unprivileged=unprivileged), env=writer_env(**env),
                          capture_output=True, text=True, timeout=120, cwd=REPO)
