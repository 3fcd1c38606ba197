"""Many writers, one file: exact row counts, no "database is locked", and hard kills lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

import tokencost._spool as spool_mod
from tests.ledger_helpers import REPO, fresh, ids_in, integrity, run_writer, template_record, writer_cmd, writer_env
from tokencost.ledger import Ledger, LedgerWarning, open_ledger

THREADS, PER_THREAD = 8, 200
PROCS, PER_PROC = 4, 200


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(spool_mod, "_warned", set())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _no_spool(db: Path) -> None:
    assert not Path(str(db) + ".spool.jsonl").exists()
    assert not Ledger(db).fallback_spool_path.exists()


@pytest.mark.parametrize("shared", [True, False], ids=["one-ledger", "ledger-per-thread"])
def test_threads_exact_count(tmp_path: Path, shared: bool) -> None:
    db = tmp_path / "ledger.db"
    base = template_record()
    common = Ledger(db)
    expected: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work() -> None:
        led = common if shared else Ledger(db)
        try:
            start.wait()
            for _ in range(PER_THREAD):
                rec = fresh(base)
                led.record(rec)
                with lock:
                    expected.append(rec.id)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert [w for w in caught if issubclass(w.category, LedgerWarning)] == []
    got = ids_in(db)
    assert len(got) == THREADS * PER_THREAD
    assert sorted(got) == sorted(expected)
    assert integrity(db) == "ok"
    _no_spool(db)


def test_processes_exact_count(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"  # created by the racing writers themselves (migrations race too)
    procs = [subprocess.Popen(writer_cmd(db, PER_PROC, f"p{i}"), env=writer_env(), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(PROCS)]
    outs = [p.communicate(timeout=180) for p in procs]
    expected = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "locked" not in err.lower() and "LedgerWarning" not in err, err
        lines = out.split()
        assert lines[-1] == "DONE"
        expected += lines[:-1]
    got = ids_in(db)
    assert len(got) == PROCS * PER_PROC
    assert sorted(got) == sorted(expected)
    assert integrity(db) == "ok"
    _no_spool(db)
    assert open_ledger(db).count() == PROCS * PER_PROC


def test_kill_minus_9_loses_no_returned_row(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    open_ledger(db).close()
    procs = [subprocess.Popen(writer_cmd(db, 100_000, f"k{i}"), env=writer_env(), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    returned: list[str] = []
    try:
        # read ids as each record() returns, then kill mid-stream without warning
        deadline = time.monotonic() + 60
        first = procs[0]
        while len(returned) < 300 and time.monotonic() < deadline:
            line = first.stdout.readline().strip()
            if line and line != "DONE":
                returned.append(line)
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)
    # the killed process may have printed more before the kill landed; everything printed counts
    rest = procs[0].stdout.read().split()
    returned += [x for x in rest if x != "DONE"]
    assert procs[0].returncode == -signal.SIGKILL
    assert len(returned) >= 300
    assert integrity(db) == "ok"
    present = set(ids_in(db))
    missing = [i for i in returned if i not in present]
    assert missing == []
    assert open_ledger(db).count() == len(present)


def test_fork_uses_its_own_connection(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    db = tmp_path / "ledger.db"
    led = Ledger(db)
    led.record(fresh(template_record()))  # parent connection open before the fork
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's sqlite connection
        try:
            for _ in range(50):
                led.record(fresh(template_record()))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    led.record(fresh(template_record()))
    assert led.count() == 52
    assert integrity(db) == "ok"
