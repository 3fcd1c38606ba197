"""`tokencost report` and tokencost.reports on real SQLite ledgers.

Every expected number is recomputed here, in Python with Decimal, from the rows inserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from tests.test_report_support import RATES, UNPRICED, call, make_ledger, sample_rows, usd
from tokencost.cli import app
from tokencost.errors import LedgerError, UsageError
from tokencost.reports import build_filters, report, report_frame, spend_pivot

runner = CliRunner()


@pytest.fixture
def rows() -> list[dict]:
    return sample_rows()


@pytest.fixture
def db(tmp_path: Path, rows: list[dict]) -> Path:
    return make_ledger(tmp_path / "ledger.db", rows)


def model_of(r: dict) -> str:
    return r["model"] or r["model_requested"]


def expected(rows: list[dict], key) -> dict:
    """Group rows by key(row) -> exact sums, the way a careful person would on paper."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for r in rows:
        g = out[key(r)]
        g["calls"] += 1
        g["failed"] += r["status"] is None or r["status"] >= 400 or r["error_type"] is not None
        g["estimated"] += r["usage_source"] == "estimated"
        g["prompt"] += r["prompt_tokens"] or 0
        g["completion"] += r["completion_tokens"] or 0
        g["cached"] += r["cached_tokens"] or 0
        if r["total_cost_pusd"] is None:
            g["unpriced_tokens"] += (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
        else:
            g["cost"] += usd(r["total_cost_pusd"])
            g["prompt_cost"] += usd(r["prompt_cost_pusd"])
            g["completion_cost"] += usd(r["completion_cost_pusd"])
    return out


def test_by_model_matches_the_rows_to_the_cent(db, rows):
    rep = report(db, by=["model"])
    want = expected(rows, model_of)
    got = {g.keys[0]: g for g in rep.rows}
    assert set(got) == set(want)
    for m, w in want.items():
        g = got[m]
        assert (g.calls, g.failed_calls, g.estimated_calls) == (w["calls"], w["failed"], w["estimated"])
        assert (g.prompt_tokens, g.completion_tokens, g.cached_tokens) == (w["prompt"], w["completion"], w["cached"])
        assert g.unpriced_tokens == w["unpriced_tokens"]
        if m == UNPRICED:
            assert g.total_cost is None  # unpriced, never $0
        else:
            assert g.total_cost == w["cost"]
            assert Decimal(g.metrics(1)["prompt_cost_usd"]) == w["prompt_cost"]
    total = sum((w["cost"] for w in want.values()), Decimal(0))
    assert rep.totals.total_cost == total
    assert rep.totals.calls == len(rows)
    assert round(rep.totals.total_cost, 2) == round(sum(usd(r["total_cost_pusd"]) for r in rows if r["total_cost_pusd"]), 2)
    # biggest spender first
    costs = [g.total_cost_pusd or 0 for g in rep.rows]
    assert costs == sorted(costs, reverse=True)


def test_day_by_model_in_a_time_zone_with_a_dst_change(tmp_path):
    # New York leaves DST on 2026-11-01 at 06:00 UTC: the local day boundary moves from 04:00 to 05:00 UTC.
    t0 = datetime(2026, 10, 30, tzinfo=timezone.utc)
    rows = [call(t0 + timedelta(minutes=37 * i), model=["gpt-4o-2024-08-06", "gpt-4-0613"][i % 2], prompt=10 + i,
                 completion=i % 7) for i in range(300)]
    db = make_ledger(tmp_path / "l.db", rows)
    zone = ZoneInfo("America/New_York")
    rep = report(db, by=["day", "model"], filters=build_filters(tz="America/New_York"))

    def local_day(r):
        return datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).astimezone(zone).date().isoformat()

    want = expected(rows, lambda r: (local_day(r), model_of(r)))
    got = {g.keys: g for g in rep.rows}
    assert set(got) == set(want)
    for k, w in want.items():
        assert got[k].calls == w["calls"] and got[k].total_cost == w["cost"] and got[k].prompt_tokens == w["prompt"]
    days = [g.keys[0] for g in rep.rows]
    assert days == sorted(days)
    # the same ledger in UTC groups differently around the boundaries
    utc = report(db, by=["day", "model"])
    assert {g.keys: g.calls for g in utc.rows} != {k: w["calls"] for k, w in want.items()}


def test_week_and_month_keys(db, rows):
    def day(r):
        return datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).date()

    weeks = expected(rows, lambda r: (day(r) - timedelta(days=day(r).weekday())).isoformat())
    rep = report(db, by=["week"])
    assert {g.keys[0]: g.calls for g in rep.rows} == {k: w["calls"] for k, w in weeks.items()}
    assert {g.keys[0]: g.total_cost for g in rep.rows} == {k: w["cost"] for k, w in weeks.items()}
    months = report(db, by=["month"])
    assert [g.keys[0] for g in months.rows] == ["2026-11"]


def test_filters_since_until_model_and_tag(db, rows):
    f = build_filters(since="2026-11-22", until="2026-11-24", models=["gpt-4-0613"], tags=["team=search"])
    rep = report(db, by=["user"], filters=f)
    keep = [r for r in rows if "2026-11-22" <= r["started_at"][:10] <= "2026-11-24"
            and model_of(r) == "gpt-4-0613" and json.loads(r["tags"])["team"] == "search"]
    want = expected(keep, lambda r: json.loads(r["tags"])["user"])
    assert {g.keys[0]: (g.calls, g.total_cost) for g in rep.rows} == {k: (w["calls"], w["cost"]) for k, w in want.items()}
    assert rep.totals.calls == len(keep) > 0


def test_relative_since_uses_now():
    f = build_filters(since="7d", now=datetime(2026, 11, 29, 12, tzinfo=timezone.utc))
    assert f.since == datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "7x", "2026/11/01"])
def test_invalid_dates_are_usage_errors(bad):
    with pytest.raises(UsageError, match="--since"):
        build_filters(since=bad)


def test_tag_key_and_app_grouping(db, rows):
    rep = report(db, by=["tag:team", "app"])
    want = expected(rows, lambda r: (json.loads(r["tags"])["team"], r["app"]))
    assert {g.keys: (g.calls, g.total_cost_pusd) for g in rep.rows} == {
        k: (w["calls"], sum(r["total_cost_pusd"] or 0 for r in rows
                            if (json.loads(r["tags"])["team"], r["app"]) == k) or None) for k, w in want.items()}


def test_frame_and_pivot_hold_exact_decimals(db, rows):
    rep = report(db, by=["day", "model"])
    df = report_frame(rep)
    assert list(df.columns[:2]) == ["day", "model"]
    assert all(isinstance(v, Decimal) or v is None for v in df["total_cost_usd"])
    pv = spend_pivot(rep)
    assert sum(pv.sum(axis=0), Decimal(0)) == rep.totals.total_cost
    assert pv.columns[0] == "gpt-4-0613"  # the biggest spender leads the stack
    day = "2026-11-21"
    want = sum(usd(r["total_cost_pusd"]) for r in rows if r["started_at"].startswith(day) and r["model"] == "gpt-4o-2024-08-06"
               and r["total_cost_pusd"])
    assert pv.loc[day, "gpt-4o-2024-08-06"] == want


# --------------------------------------------------------------------------- CLI


def test_cli_json_contract(db, rows):
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "model", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["by"] == ["model"] and doc["tz"] == "UTC" and doc["since"] is None
    keys = {"model", "calls", "failed_calls", "estimated_calls", "prompt_tokens", "completion_tokens", "cached_tokens",
            "prompt_cost_usd", "completion_cost_usd", "total_cost_usd", "unpriced_calls", "unpriced_tokens", "share"}
    assert all(set(row) == keys for row in doc["rows"])
    by_model = {row["model"]: row for row in doc["rows"]}
    assert by_model[UNPRICED]["total_cost_usd"] is None and by_model[UNPRICED]["unpriced_tokens"] > 0
    want = expected(rows, model_of)
    for m in RATES:
        assert Decimal(by_model[m]["total_cost_usd"]) == want[m]["cost"]
    assert Decimal(doc["totals"]["total_cost_usd"]) == sum((w["cost"] for w in want.values()), Decimal(0))
    assert doc["totals"]["calls"] == len(rows)
    assert sum(Decimal(row["share"] or 0) for row in doc["rows"]) == pytest.approx(Decimal(1), abs=Decimal("0.001"))


def test_cli_table_exact_output(tmp_path):
    t = datetime(2026, 11, 28, 9, tzinfo=timezone.utc)
    rows = [call(t, "gpt-4o-2024-08-06", 1000, 500), call(t, "gpt-4o-2024-08-06", 2000, 0, cached=1000),
            call(t, "gpt-4-0613", 100, 10, usage_source="estimated"), call(t, UNPRICED, 50, 5),
            call(t, "gpt-4o-2024-08-06", status=429)]
    db = make_ledger(tmp_path / "t.db", rows)
    r = runner.invoke(app, ["report", "--db", str(db)])
    assert r.exit_code == 0, r.output
    # By hand, USD per token from RATES: gpt-4o prompt 1000*0.0000025 + (1000*0.0000025 + 1000*0.00000125)
    # = 0.00625, completion 500*0.00001 = 0.005, total 0.01125; gpt-4 0.003 + 0.0006 = 0.0036;
    # shares 0.01125/0.01485 = 75.8 %, 0.0036/0.01485 = 24.2 %. Display rounds half-up to 6 places.
    assert r.stdout == (
        "model              calls  failed  est.  prompt tok  completion tok  cached tok   prompt $  completion $               total $   share\n"
        "-----------------  -----  ------  ----  ----------  --------------  ----------  ---------  ------------  --------------------  ------\n"
        "gpt-4o-2024-08-06      2                     3,000             500       1,000  $0.006250     $0.005000             $0.011250   75.8%\n"
        "gpt-4-0613             1            1*         100              10           0  $0.003000     $0.000600             $0.003600   24.2%\n"
        "gpt-4o                 1       1                 0               0           0  $0.000000     $0.000000             $0.000000\n"
        "my-finetune-x          1                        50               5           0   unpriced      unpriced              unpriced\n"
        "TOTAL                  5       1    1*       3,150             515       1,000  $0.009250     $0.005600  $0.014850 + unpriced  100.0%\n"
        "Period: 2026-11-28T09:00:00Z to 2026-11-28T09:00:00Z; days in UTC.\n"
        "failed: 1 calls got an error or no answer (counted in calls).\n"
        "est.*: 1 calls with usage estimated by tokencost (the API reported none, e.g. a stream without a usage chunk).\n"
        "unpriced: 55 tokens in 1 calls have no price row, so their cost is unknown (not $0); `tokencost prices --help` adds prices.\n"
    )
    # the 429 row has the requested model "gpt-4o" and no reported model: it is its own row, $0 spent
    assert sum(usd(x["total_cost_pusd"]) for x in rows if x["total_cost_pusd"]) == Decimal("0.01485")


def test_cli_csv_is_exact_and_markdown_is_a_table(db, rows):
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--format", "csv"])
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("day,calls,failed_calls,")
    last = lines[-1].split(",")
    assert last[0] == "TOTAL" and Decimal(last[9]) == sum(usd(x["total_cost_pusd"]) for x in rows if x["total_cost_pusd"])
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--format", "markdown"])
    assert r.exit_code == 0
    md = r.stdout.splitlines()
    assert md[0].startswith("| day | calls |") and md[1].startswith("|---|---:|")
    assert sum(1 for line in md if line.startswith("| 2026-11-")) == 7


def test_empty_ledger_is_a_message_and_exit_0(tmp_path):
    db = make_ledger(tmp_path / "empty.db", [])
    r = runner.invoke(app, ["report", "--db", str(db)])
    assert r.exit_code == 0
    assert r.stdout == "" and "No calls in the ledger" in r.stderr and str(db) in r.stderr
    r = runner.invoke(app, ["report", "--db", str(db), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"] == [] and json.loads(r.stdout)["totals"]["calls"] == 0


def test_filters_that_match_nothing_say_so(db):
    r = runner.invoke(app, ["report", "--db", str(db), "--model", "gpt-9"])
    assert r.exit_code == 0 and "No calls matching these filters" in r.stderr


def test_missing_db_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "ledger.db"
    r = runner.invoke(app, ["report", "--db", str(missing)])
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: ") and str(missing) in r.stderr and "Traceback" not in r.output
    with pytest.raises(LedgerError):
        report(missing)


def test_unknown_by_lists_valid_keys(db):
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "colour"])
    assert r.exit_code == 2
    assert "unknown --by key 'colour'" in r.stderr and "model, day, week, month, endpoint, user, app, tag:KEY" in r.stderr


def test_bad_dates_and_tz_exit_2(db):
    for args in (["--since", "2026-02-30"], ["--until", "soon"], ["--tz", "Mars/Olympus"], ["--tag", "novalue"]):
        r = runner.invoke(app, ["report", "--db", str(db), *args])
        assert r.exit_code == 2, args
        assert r.stderr.startswith("Error: ") and "Traceback" not in r.output


def test_plot_writes_a_png(db, tmp_path):
    out = tmp_path / "spend.png"
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--by", "model", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


def test_real_subprocess_json(db, rows):
    p = subprocess.run([sys.executable, "-m", "tokencost", "report", "--db", str(db), "--by", "model", "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert Decimal(doc["totals"]["total_cost_usd"]) == sum(usd(r["total_cost_pusd"]) for r in rows if r["total_cost_pusd"])


def test_report_modules_do_not_import_pandas_at_import_time():
    code = ("import sys, tokencost.cli, tokencost.spend, tokencost.filters, tokencost.budgets, tokencost.reports, "
            "tokencost.calibrate, tokencost.reconcile, tokencost.plots; "
            "print('pandas' in sys.modules, 'matplotlib' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["False", "False"], p.stderr


def test_contract_columns_are_the_ledgers():
    from tests.test_report_support import COLUMNS
    from tokencost.record import COLUMNS as LEDGER_COLUMNS

    assert tuple(COLUMNS) == tuple(LEDGER_COLUMNS)


def test_older_schema_is_migrated_on_open(tmp_path, rows):
    """A ledger written before budgets and indexes existed: report works, budget set finds its table."""
    import sqlite3

    from sqlite_utils import Database

    from tests.test_report_support import bulk_insert
    from tokencost.ledger import apply_migrations

    path = tmp_path / "old.db"
    db = Database(path)
    apply_migrations(db, stop_before="002_create_budgets")
    with db.conn:
        bulk_insert(db.conn, rows)
    db.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'budgets'").fetchall() == []
    con.close()
    r = runner.invoke(app, ["report", "--db", str(path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["totals"]["calls"] == len(rows)
    r = runner.invoke(app, ["budget", "set", "m", "--limit", "5", "--db", str(path)])
    assert r.exit_code == 0, r.output
    names = {n for (n,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"budgets", "calls_started_at"} <= names


@pytest.mark.parametrize("by", [["model"], ["day", "model"], ["tag:user"], []])
def test_parallel_rowid_chunks_give_the_same_report(db, by):
    one = report(db, by=by, workers=1)
    many = report(db, by=by, workers=3)
    assert many.rows == one.rows and many.totals == one.totals
    f = build_filters(tz="Europe/Paris", since="2026-11-21")
    assert report(db, by=by, filters=f, workers=4).rows == report(db, by=by, filters=f, workers=1).rows


@pytest.mark.parametrize("tz", ["Asia/Kathmandu", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Kiritimati"])
def test_day_and_week_in_odd_offset_zones(tmp_path, tz):
    # +05:45, +05:30, +10:30/+11 (a 30-minute DST), +14: local days that are not whole UTC hours apart
    t0 = datetime(2026, 3, 30, tzinfo=timezone.utc)
    rows = [call(t0 + timedelta(minutes=7 * i), prompt=1 + i % 50, completion=i % 3) for i in range(2000)]
    db = make_ledger(tmp_path / "z.db", rows)
    zone = ZoneInfo(tz)

    def local(r):
        return datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")).astimezone(zone).date()

    rep = report(db, by=["week", "day"], filters=build_filters(tz=tz))
    want = expected(rows, lambda r: ((local(r) - timedelta(days=local(r).weekday())).isoformat(), local(r).isoformat()))
    assert {g.keys: (g.calls, g.total_cost) for g in rep.rows} == {k: (w["calls"], w["cost"]) for k, w in want.items()}


def test_plot_without_a_time_key_plots_per_day(db, tmp_path, rows):
    from tokencost.plots import plot_spend
    from tokencost.reports import spend_pivot

    out = tmp_path / "m.png"
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "model", "--plot", str(out)])
    assert r.exit_code == 0 and out.stat().st_size > 10_000 and f"Wrote {out}" in r.stderr
    pv = spend_pivot(report(db, by=["day", "model"]))
    assert list(pv.index) == sorted({x["started_at"][:10] for x in rows})
    assert plot_spend(db, tmp_path / "w.png", by=["week", "tag:team"]).exists()


def test_plot_title_states_period_total_and_unpriced(db):
    from tokencost.plots import plot_title

    rep = report(db, by=["day", "model"])
    days = sorted({g.keys[0] for g in rep.rows})
    assert plot_title(rep, "day", "model", days) == (
        f"Spend per day by model, 2026-11-20 to 2026-11-26 (UTC) — total ${rep.totals.total_cost:.2f} "
        f"+ {rep.totals.unpriced_tokens:,} unpriced tokens")


def test_table_and_markdown_show_sub_cent_costs(tmp_path):
    t = datetime(2026, 11, 28, 9, tzinfo=timezone.utc)
    # gpt-4o: 14 prompt tokens x $2.50/1M = $0.000035; gpt-4o-mini: 1 prompt token x $0.15/1M = $0.00000015
    rows = [call(t, "gpt-4o-2024-08-06", 14, 0), call(t, "gpt-4o-mini-2024-07-18", 1, 0)]
    small = Decimal(14) * Decimal("2.50") / 10**6
    tiny = Decimal(1) * Decimal("0.15") / 10**6
    assert (usd(rows[0]["total_cost_pusd"]), usd(rows[1]["total_cost_pusd"])) == (small, tiny)
    db = make_ledger(tmp_path / "s.db", rows)
    for fmt in ("table", "markdown"):
        r = runner.invoke(app, ["report", "--db", str(db), "--format", fmt])
        assert r.exit_code == 0, r.output
        line_4o = next(x for x in r.stdout.splitlines() if "gpt-4o-2024-08-06" in x)
        assert line_4o.count(f"${small:.6f}") == 2 and "$0.000000" in line_4o  # prompt, total; no completion
        line_mini = next(x for x in r.stdout.splitlines() if "gpt-4o-mini" in x)
        # rounding to 6 places would show $0.000000: real money is never shown as zero
        assert line_mini.count(f"${tiny:f}") == 2 and f"${tiny:f}" == "$0.00000015"
        total = next(x for x in r.stdout.splitlines() if "TOTAL" in x)
        assert f"${small + tiny:.6f}" in total
    doc = json.loads(runner.invoke(app, ["report", "--db", str(db), "--format", "json"]).stdout)
    assert Decimal(doc["totals"]["total_cost_usd"]) == small + tiny  # JSON stays exact


def test_plot_to_a_missing_directory_is_one_line_and_writes_nothing(db, tmp_path):
    out = tmp_path / "nonexistent" / "dir" / "p.png"
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "model", "--plot", str(out)])
    assert r.exit_code == 1, (r.output, r.exception)
    assert r.stderr.startswith(f"Error: cannot write plot {out}: ") and r.stderr.count("\n") == 1
    assert f"no directory {out.parent}" in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""  # no table printed before the failure
    assert not (tmp_path / "nonexistent").exists()


def test_plot_with_an_unknown_image_type_is_exit_2_and_writes_nothing(db, tmp_path):
    out = tmp_path / "p.docx"
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--plot", str(out)])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith(f"Error: cannot write plot {out}: unknown image type '.docx'") and r.stderr.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(db.name)] == []


def test_plot_replaces_an_old_file_whole_and_leaves_no_temporary(db, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    out = plots / "spend.svg"
    out.write_text("old")
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stderr == f"Wrote {out}\n"
    assert [p.name for p in plots.iterdir()] == ["spend.svg"]
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and text.rstrip().endswith("</svg>")


def test_reports_re_exports_the_aggregates_from_one_list():
    from tokencost import reports, spend

    for name in spend.__all__:
        assert name in reports.__all__ and getattr(reports, name) is getattr(spend, name)
    for name in reports.__all__:
        assert getattr(reports, name) is not None
    assert len(set(reports.__all__)) == len(reports.__all__)


def test_a_plot_that_fails_midway_leaves_the_old_file(db, tmp_path, monkeypatch):
    """Fault injection: the disk fills up after half the image is written."""
    import errno

    from matplotlib.figure import Figure

    out = tmp_path / "spend.png"
    out.write_bytes(b"the old plot")

    def half_then_full(self, fname, **kw):
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_full)
    r = runner.invoke(app, ["report", "--db", str(db), "--by", "day", "--plot", str(out)])
    assert r.exit_code == 1, (r.output, r.exception)
    assert r.stderr == f"Error: cannot write plot {out}: No space left on device\n"
    assert out.read_bytes() == b"the old plot"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(db.name)) == ["spend.png"]
