"""Ledger write throughput: rows/s from one process and from four processes into one file.

    python bench/bench_ledger.py            # print the results
    python bench/bench_ledger.py --write    # and replace this script's section in bench/RESULTS.md

Each row is a real record (built once by build_record from the recorded gpt-4o response, then given
a fresh id from tokencost.record.new_id, the time-ordered UUIDv7 the wrapper uses), written with
Ledger.record(): one committed transaction per row, as in production.
The baseline is the same INSERT through a bare sqlite3 connection (WAL, synchronous=NORMAL), so the
ratio shows what the ledger's own work costs on this machine in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MARK_START, MARK_END = "<!-- bench_ledger:start -->", "<!-- bench_ledger:end -->"


def _base_record():
    from tokencost.record import build_record

    body = json.loads((ROOT / "tests/fixtures/openai/chat_completion_gpt-4o.json").read_text())
    return build_record(endpoint="chat.completions",
                        request={"model": "gpt-4o", "messages": [{"role": "user", "content": "What's the weather like in SF?"}]},
                        response=body, status=200, error_type=None, started_at=datetime.now(timezone.utc),
                        latency_ms=120.0, streamed=False, tags={"feature": "bench"}, via="wrap")


def write_rows(db: str, n: int, start_at: float | None = None) -> float:
    """Write n rows with Ledger.record; returns seconds spent writing (after start_at)."""
    from tokencost.ledger import Ledger
    from tokencost.record import new_id

    base = _base_record()
    led = Ledger(db)
    led.record(dataclasses.replace(base, id=new_id()))  # open + migrate outside the timing
    recs = [dataclasses.replace(base, id=new_id()) for _ in range(n)]
    if start_at is not None:
        while time.time() < start_at:
            time.sleep(0.0005)
    t = time.perf_counter()
    for r in recs:
        led.record(r)
    dt = time.perf_counter() - t
    led.close()
    return dt


def raw_rows(db: str, n: int) -> float:
    """Baseline: the same INSERT on a bare sqlite3 connection, one commit per row."""
    from tokencost.ledger import open_ledger
    from tokencost.record import COLUMNS, new_id

    open_ledger(db).close()
    base = _base_record()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    sql = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
    rows = [[getattr(dataclasses.replace(base, id=new_id()), c) for c in COLUMNS] for _ in range(n)]
    t = time.perf_counter()
    for params in rows:
        con.execute(sql, params)
    dt = time.perf_counter() - t
    con.close()
    return dt


def _count(db: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        con.close()


def run(n_single: int, n_per_proc: int, procs: int, repeats: int) -> dict:
    single, raw, multi, multi_per = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_ledger_") as tmp:
        for i in range(repeats):
            db = os.path.join(tmp, f"single{i}.db")
            single.append(n_single / write_rows(db, n_single))
            assert _count(db) == n_single + 1
            db = os.path.join(tmp, f"raw{i}.db")
            raw.append(n_single / raw_rows(db, n_single))
            db = os.path.join(tmp, f"multi{i}.db")
            from tokencost.ledger import open_ledger

            open_ledger(db).close()
            start_at = time.time() + 4.0  # let every child import and open before the clock starts
            children = [subprocess.Popen([sys.executable, __file__, "--child", db, str(n_per_proc), str(start_at)],
                                         stdout=subprocess.PIPE, text=True) for _ in range(procs)]
            outs = [c.communicate()[0] for c in children]
            finished = max(float(o.split()[1]) for o in outs)
            assert all(c.returncode == 0 for c in children)
            assert _count(db) == procs * (n_per_proc + 1), "rows lost under concurrency"
            multi.append(procs * n_per_proc / (finished - start_at))
            multi_per.append(statistics.median(n_per_proc / float(o.split()[0]) for o in outs))
    return {
        "single_rows_s": statistics.median(single),
        "raw_rows_s": statistics.median(raw),
        "multi_rows_s": statistics.median(multi),
        "multi_per_proc_rows_s": statistics.median(multi_per),
        "runs": {"single": single, "raw": raw, "multi": multi},
    }


def machine() -> str:
    return (f"- machine: `{uname()}`\n- nproc: {os.cpu_count()}\n- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}\n"
            f"- python {platform.python_version()}, sqlite {sqlite3.sqlite_version}")


def render(res: dict, args: argparse.Namespace) -> str:
    ratio = res["single_rows_s"] / res["raw_rows_s"]
    return "\n".join([
        MARK_START,
        "## Ledger write throughput (`bench/bench_ledger.py`)",
        "",
        machine(),
        f"- method: real records, one committed row per `Ledger.record()` (WAL, synchronous=NORMAL); "
        f"median of {args.repeats} runs; {args.n} rows single-process, {args.procs} processes x {args.per_proc} rows "
        "into one file, started together; row counts checked after every run",
        "",
        "| case | rows/s |",
        "| --- | ---: |",
        f"| 1 process, `Ledger.record` | {res['single_rows_s']:,.0f} |",
        f"| 1 process, bare sqlite3 INSERT (same schema, baseline) | {res['raw_rows_s']:,.0f} |",
        f"| {args.procs} processes into one file, aggregate | {res['multi_rows_s']:,.0f} |",
        f"| {args.procs} processes, each (median) | {res['multi_per_proc_rows_s']:,.0f} |",
        "",
        f"Ledger / bare sqlite3 in the same run: {ratio:.2f}x the throughput "
        f"({1e6 / res['single_rows_s']:.0f} µs vs {1e6 / res['raw_rows_s']:.0f} µs per row). "
        f"No row lost and no \"database is locked\" in any run.",
        MARK_END,
    ])


from _results import uname, write_section  # noqa: E402


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        db, n, start_at = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        dt = write_rows(db, n, start_at)
        print(dt, time.time())
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--per-proc", type=int, default=2000)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write", action="store_true", help="replace this script's section in bench/RESULTS.md")
    args = p.parse_args()
    res = run(args.n, args.per_proc, args.procs, args.repeats)
    text = render(res, args)
    print(text)
    if args.write:
        write_section("bench_ledger", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
