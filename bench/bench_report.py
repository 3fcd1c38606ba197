"""Benchmark: `tokencost report` (and friends) on a 1,000,000-call ledger.

    python bench/bench_report.py [--rows 1000000] [--small 100000] [--repeat 3] [--write-results]

Builds ledgers in bench/_work/ (created and migrated by the real ledger, rows added with
executemany in one transaction), then times each command in a fresh subprocess (what a user
waits for, Python start-up and imports included) and records its peak RSS. Running the same
commands on a ledger 10x smaller shows whether memory grows with the ledger. check_budgets is
timed in-process (first call of a period vs the incremental calls that follow).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work"
RESULTS = ROOT / "bench" / "RESULTS.md"
sys.path.insert(0, str(ROOT / "src"))

from tokencost.ledger import open_ledger  # noqa: E402
from tokencost.record import COLUMNS  # noqa: E402

MODELS = {  # picodollars per token (prompt, completion); None = unpriced
    "gpt-4o-2024-08-06": (2_500_000, 10_000_000),
    "gpt-4o-mini-2024-07-18": (150_000, 600_000),
    "gpt-4-0613": (30_000_000, 60_000_000),
    "gpt-3.5-turbo-0125": (500_000, 1_500_000),
    "my-finetune": None,
}


def rows(n: int, seed: int, end: datetime):
    """n calls spread over the 90 days before ``end``; 3% failed, 5% estimated, 4% unpriced."""
    rnd = random.Random(seed)
    names = list(MODELS)
    weights = [30, 40, 10, 16, 4]
    span = 90 * 86400
    start = end - timedelta(seconds=span)
    for i in range(n):
        t = start + timedelta(seconds=span * i / n)
        m = rnd.choices(names, weights)[0]
        p, c = rnd.randrange(20, 4000), rnd.randrange(0, 800)
        cached = rnd.choice((0, 0, 0, min(p, 1024)))
        failed = rnd.random() < 0.03
        rate = MODELS[m]
        if failed:
            p = c = cached = 0
        pc = cc = tc = None
        if rate and not failed:
            pc = (p - cached) * rate[0] + cached * (rate[0] // 2)
            cc = c * rate[1]
            tc = pc + cc
        tags = json.dumps({"user": f"u{rnd.randrange(500)}", "team": rnd.choice(("search", "chat", "ops"))})
        yield (uuid.UUID(int=rnd.getrandbits(128)).hex, t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), 100.0,
               "chat.completions", m.split("-2")[0], None if failed else m, None if failed else p,
               None if failed else c, None if failed else cached, 0, None if failed else p + c, pc, cc, tc,
               None, None, None if failed else ("estimated" if rnd.random() < 0.05 else "api"),
               p + rnd.choice((0, 0, 0, 1, -1)), 429 if failed else 200, "RateLimitError" if failed else None,
               None, 0, tags, rnd.choice(("bot", "batch")), "wrap", None, None)


def _indexes(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls' "
                                          "AND sql IS NOT NULL ORDER BY name")]
    finally:
        con.close()


def build(path: Path, n: int, end: datetime) -> tuple[float, int]:
    if path.exists():
        con = sqlite3.connect(path)
        have = con.execute("SELECT count(*) FROM calls").fetchone()[0]
        total = con.execute("SELECT sum(total_cost_pusd) FROM calls").fetchone()[0]
        con.close()
        if have == n:
            return 0.0, total
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    open_ledger(path).close()  # schema + indexes from the real migrations
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    with con:
        con.executemany(f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        rows(n, 1, end))
    total = con.execute("SELECT sum(total_cost_pusd) FROM calls").fetchone()[0]
    con.execute("ANALYZE")
    con.close()
    return time.perf_counter() - t0, total


def run(args: list[str]) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS (KiB), stdout and CPU seconds of one CLI run in a fresh process."""
    code = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "dt = time.perf_counter() - t\n"
            "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(dt, ru.ru_maxrss, p.returncode, ru.ru_utime + ru.ru_stime)\n"
            "sys.stdout.write(p.stdout)\n"
            "sys.stderr.write(p.stderr[-2000:])\n")
    p = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "tokencost", *args],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    head, _, out = p.stdout.partition("\n")
    dt, rss, rc, cpu = head.split()
    if rc not in ("0", "1"):
        raise SystemExit(f"{args} failed ({rc}): {p.stderr}")
    return float(dt), int(rss), out, float(cpu)


def bench_budgets(db: Path, end: datetime, repeat: int) -> dict[str, float]:
    from tokencost import budgets

    budgets.set_budget(db, "bench-month", limit="1000000", period="month")
    budgets.set_budget(db, "bench-team", limit="1000000", period="week", tags={"team": "search"})
    budgets._CACHE.clear()
    now = end - timedelta(seconds=1)
    t0 = time.perf_counter()
    budgets.check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.01"), tags={"team": "search"}, now=now)
    first = time.perf_counter() - t0
    times = []
    for _ in range(200 * repeat):
        t0 = time.perf_counter()
        budgets.check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.01"), tags={"team": "search"}, now=now)
        times.append(time.perf_counter() - t0)
    budgets.remove_budget(db, "bench-month")
    budgets.remove_budget(db, "bench-team")
    return {"first_ms": first * 1000, "next_median_us": statistics.median(times) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-results", action="store_true", help="replace this script's section of bench/RESULTS.md")
    a = ap.parse_args()

    end = datetime(2026, 11, 29, tzinfo=timezone.utc)
    big, small = WORK / f"ledger-{a.rows}.db", WORK / f"ledger-{a.small}.db"
    gen_big, total_big = build(big, a.rows, end)
    gen_small, _ = build(small, a.small, end)
    size_mb = big.stat().st_size / 1e6
    print(f"ledger {a.rows:,} rows: {size_mb:.0f} MB (built in {gen_big:.1f}s)")

    cases = [
        ("report --by model", ["report", "--by", "model"]),
        ("report --by model --format json", ["report", "--by", "model", "--format", "json"]),
        ("report --by day --by model", ["report", "--by", "day", "--by", "model"]),
        ("report --by week --by model --tz Europe/Paris", ["report", "--by", "week", "--by", "model", "--tz", "Europe/Paris"]),
        ("report --by tag:team --by app", ["report", "--by", "tag:team", "--by", "app"]),
        ("report --by model --since 7d", ["report", "--by", "model", "--since", "7d"]),
        ("report --by day --by model --plot", ["report", "--by", "day", "--by", "model", "--plot", str(WORK / "bench.png")]),
        ("calibrate", ["calibrate"]),
        ("--help (start-up floor)", ["--help"]),
    ]
    results = []
    for label, args in cases:
        for db, n in ((big, a.rows), (small, a.small)):
            extra = [] if args == ["--help"] else ["--db", str(db)]
            runs = [run(args + extra) for _ in range(a.repeat)]
            best = min(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            cpu = min(r[3] for r in runs)
            results.append((label, n, best, rss, cpu))
            print(f"{label:48s} {n:>9,} rows  best {best:6.2f}s  cpu {cpu:5.2f}s  peak RSS {rss / 1024:6.0f} MiB")
            if args == ["--help"]:
                break
    # exactness spot check: the JSON total equals the SQL sum computed independently here
    load_before = os.getloadavg()
    _, _, out, _ = run(["report", "--by", "model", "--format", "json", "--db", str(big)])
    doc = json.loads(out)
    assert Decimal(doc["totals"]["total_cost_usd"]) == Decimal(total_big) / Decimal(10**12), "total mismatch"
    bud = bench_budgets(big, end, 1)
    print(f"check_budgets on {a.rows:,} rows, 2 budgets: first call {bud['first_ms']:.1f} ms, "
          f"then median {bud['next_median_us']:.0f} us per call")

    if a.write_results:
        from _results import uname

        lines = [
            f"## Reports on a {a.rows:,}-call ledger (bench/bench_report.py)", "",
            f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Machine: `{uname()}`, "
            f"nproc {os.cpu_count()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
            f"- Ledger: {a.rows:,} calls over 90 days, {size_mb:.0f} MB, built by the real migrations "
            f"(indexes: {', '.join(_indexes(big))}) + one executemany "
            f"({f'{gen_big:.0f} s' if gen_big else 'reused from bench/_work'}); 5 models, 3% failed, "
            "5% estimated, 4% unpriced, JSON tags. Every command runs in a fresh process (start-up and imports "
            f"included); best of {a.repeat}; peak RSS of that process. Same commands on a {a.small:,}-call ledger "
            "show whether memory grows with the ledger.",
            "- The machine is shared: load average at the end of the run "
            f"{load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f} (1/5/15 min) on {os.cpu_count()} cores, "
            "so wall times are inflated; CPU seconds (user+sys of the process, best run) are the steadier figure.",
            "- Exactness check: `report --format json` total == SQL SUM of picodollars computed by the script.",
            "", f"| command | {a.rows:,} calls: wall | CPU | peak RSS | {a.small:,} calls: wall | CPU | peak RSS |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        by = {}
        for label, n, best, rss, cpu in results:
            by.setdefault(label, {})[n] = (best, rss, cpu)
        for label, d in by.items():
            b = d.get(a.rows) or next(iter(d.values()))
            s = d.get(a.small)
            lines.append(f"| `tokencost {label.replace('tokencost ', '')}` | {b[0]:.2f} s | {b[2]:.2f} s | {b[1] / 1024:.0f} MiB | "
                         + (f"{s[0]:.2f} s | {s[2]:.2f} s | {s[1] / 1024:.0f} MiB |" if s else "— | — | — |"))
        lines += ["", f"- `check_budgets` (before every tracked call), 2 budgets (month, all calls; week, tag "
                  f"team=search) on {a.rows:,} rows: first call of a period {bud['first_ms']:.1f} ms (sums the "
                  f"period once through the started_at index), then {bud['next_median_us']:.0f} µs median per "
                  "call (rowid range since the last check + a 1 s budget cache).", ""]
        from _results import write_section

        write_section("bench_report", "\n".join(lines))
        print(f"wrote its section of {RESULTS}")


if __name__ == "__main__":
    main()
