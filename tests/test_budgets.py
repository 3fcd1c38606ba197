"""Budgets: the table, `tokencost budget`, and check_budgets before a call (also through the real wrapper)."""

from __future__ import annotations

import json
import sqlite3
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_report_support import UNPRICED, add_rows, call, make_ledger, usd
from tokencost.budgets import (BudgetWarning, budget_status, check_budgets, list_budgets, period_bounds,
                               remove_budget, set_budget)
from tokencost.cli import app
from tokencost.errors import BudgetExceeded, UsageError

runner = CliRunner()
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)  # a Wednesday, mid-month


def add(db: Path, *rows: dict) -> None:
    add_rows(db, *rows)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_ledger(tmp_path / "ledger.db", [])


def test_period_bounds():
    assert period_bounds("day", NOW) == (datetime(2026, 11, 18, tzinfo=timezone.utc), datetime(2026, 11, 19, tzinfo=timezone.utc))
    assert period_bounds("week", NOW) == (datetime(2026, 11, 16, tzinfo=timezone.utc), datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert period_bounds("month", datetime(2026, 12, 31, 23, tzinfo=timezone.utc))[1] == datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_set_replace_list_and_remove(db):
    set_budget(db, "monthly", limit="50", period="month")
    set_budget(db, "search", limit="12.50", period="day", models=["gpt-4o-2024-08-06"], tags=[("team", "search")],
               action="refuse")
    set_budget(db, "monthly", limit="75", period="month")  # replaces
    got = {b.name: b for b in list_budgets(db)}
    assert got["monthly"].limit_usd == Decimal(75) and got["monthly"].limit_pusd == 75 * 10**12
    assert got["search"].models == ("gpt-4o-2024-08-06",) and got["search"].tags == (("team", "search"),)
    assert got["search"].action == "refuse" and got["search"].limit_pusd == 12_500_000_000_000
    row = sqlite3.connect(db).execute("SELECT models, tags FROM budgets WHERE name='search'").fetchone()
    assert json.loads(row[0]) == ["gpt-4o-2024-08-06"] and json.loads(row[1]) == {"team": "search"}
    remove_budget(db, "monthly")
    assert [b.name for b in list_budgets(db)] == ["search"]


@pytest.mark.parametrize("kw, msg", [({"limit": "-1"}, "positive"), ({"limit": "abc"}, "--limit"),
                                     ({"period": "year"}, "--period"), ({"action": "explode"}, "--action")])
def test_bad_budget_input(db, kw, msg):
    with pytest.raises(UsageError, match=msg):
        set_budget(db, "x", **{"limit": "5", **kw})


def test_status_sums_the_period_and_projects(db):
    in_period = [call(NOW - timedelta(hours=h), "gpt-4o-2024-08-06", 10_000 * h, 1000) for h in range(1, 12)]
    before = [call(NOW - timedelta(days=1), "gpt-4o-2024-08-06", 99_999, 999)]  # yesterday: not today
    other = [call(NOW - timedelta(hours=1), "gpt-4-0613", 1000, 10, tags={"team": "x"})]
    add(db, *in_period, *before, *other)
    set_budget(db, "day4o", limit="5", period="day", models=["gpt-4o-2024-08-06"])
    set_budget(db, "month", limit="0.10", period="month")
    st = {s.budget.name: s for s in budget_status(db, now=NOW)}
    want_day = sum(r["total_cost_pusd"] for r in in_period)
    assert st["day4o"].spent_pusd == want_day
    assert st["day4o"].projected_pusd == want_day * 2  # half the day is gone
    want_month = want_day + sum(r["total_cost_pusd"] for r in before + other)
    assert st["month"].spent_pusd == want_month
    assert usd(want_month) > Decimal("0.10") and st["month"].exceeded and not st["day4o"].exceeded
    j = st["month"].to_json()
    assert Decimal(j["spent_usd"]) == usd(want_month) and j["exceeded"] is True and j["limit_usd"] == "0.1"


def test_cli_budget_status_exit_code(db):
    now = datetime.now(timezone.utc)
    add(db, call(now - timedelta(seconds=5), "gpt-4-0613", 10_000, 1000))  # $0.36
    r = runner.invoke(app, ["budget", "set", "daily", "--limit", "1", "--period", "day", "--db", str(db)])
    assert r.exit_code == 0 and r.stdout == "Budget 'daily': $1.00 per day for all calls, action warn.\n"
    r = runner.invoke(app, ["budget", "status", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "daily" in r.stdout and "$0.36" in r.stdout and "$1.00" in r.stdout
    runner.invoke(app, ["budget", "set", "daily", "--limit", "0.30", "--period", "day", "--db", str(db)])
    r = runner.invoke(app, ["budget", "status", "--db", str(db), "--format", "json"])
    assert r.exit_code == 1
    [doc] = json.loads(r.stdout)
    assert doc["exceeded"] is True and doc["spent_usd"] == "0.36"
    r = runner.invoke(app, ["budget", "status", "--db", str(db), "--format", "csv"])
    assert r.exit_code == 1
    head, row = r.stdout.splitlines()
    assert dict(zip(head.split(","), row.split(",")))["spent_usd"] == "0.36"
    assert row.endswith(",true")
    r = runner.invoke(app, ["budget", "rm", "daily", "--db", str(db)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["budget", "rm", "daily", "--db", str(db)])
    assert r.exit_code == 1 and "no budget named 'daily'" in r.stderr
    r = runner.invoke(app, ["budget", "status", "--db", str(db)])
    assert r.exit_code == 0 and "No budgets" in r.stderr


def test_cli_budget_bad_limit_is_exit_2(db):
    r = runner.invoke(app, ["budget", "set", "x", "--limit", "lots", "--db", str(db)])
    assert r.exit_code == 2 and r.stderr.startswith("Error: bad --limit")


def test_check_budgets_warns_then_refuses(db):
    add(db, call(NOW - timedelta(hours=1), "gpt-4o-2024-08-06", 100_000, 0))  # $0.25
    set_budget(db, "soft", limit="0.30", period="day")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.04"), tags={}, now=NOW)  # 0.29: fine
    with pytest.warns(BudgetWarning, match=r"budget 'soft' \(\$0.30 per day, all calls\) would be exceeded: spent \$0.25"):
        check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.06"), tags={}, now=NOW)
    set_budget(db, "hard", limit="0.05", period="day", models=["gpt-4o-2024-08-06"], tags={"team": "a"}, action="refuse")
    # 'hard' covers only team=a calls: $0 so far, + $0.06 > $0.05
    with pytest.raises(BudgetExceeded, match="budget 'hard'.*call refused before sending") as ei:
        check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.06"), tags={"team": "a"}, now=NOW)
    assert ei.value.budget == "hard" and ei.value.exit_code == 1
    # not covered: another model, or another team
    with pytest.warns(BudgetWarning):  # only 'soft' (all calls) applies
        check_budgets(db, model="gpt-4-0613", estimated_cost_usd=Decimal("0.06"), tags={"team": "a"}, now=NOW)
    with pytest.warns(BudgetWarning):
        check_budgets(db, model="gpt-4o-2024-08-06", estimated_cost_usd=Decimal("0.06"), tags={"team": "b"}, now=NOW)


def test_check_budgets_sees_new_rows_at_once_and_ignores_late_old_rows(db):
    set_budget(db, "hard", limit="1", period="day", action="refuse")
    check_budgets(db, model="gpt-4-0613", estimated_cost_usd=Decimal("0.5"), tags={}, now=NOW)  # caches the sum
    add(db, call(NOW - timedelta(days=1), "gpt-4-0613", 100_000, 0))  # $3 yesterday, written late
    check_budgets(db, model="gpt-4-0613", estimated_cost_usd=Decimal("0.5"), tags={}, now=NOW)
    add(db, call(NOW - timedelta(minutes=1), "gpt-4-0613", 20_000, 0))  # $0.60 today
    with pytest.raises(BudgetExceeded, match=r"spent \$0.60"):
        check_budgets(db, model="gpt-4-0613", estimated_cost_usd=Decimal("0.5"), tags={}, now=NOW)
    # an unpriced call (no estimate) is refused once the budget is already over
    add(db, call(NOW - timedelta(minutes=1), "gpt-4-0613", 20_000, 0))
    with pytest.raises(BudgetExceeded, match="already exceeded"):
        check_budgets(db, model="x", estimated_cost_usd=None, tags={}, now=NOW)


def test_check_budgets_without_budgets_table_is_a_no_op(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE calls (id TEXT PRIMARY KEY, started_at TEXT)")
    con.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_budgets(db, model="gpt-4o", estimated_cost_usd=Decimal(1), tags={})


def test_wrapper_refuses_before_sending(tmp_path, fake_openai):
    """The real wrapper + real openai client: a refusing budget stops the call before any HTTP request."""
    import openai

    from tokencost.wrap import track

    db = make_ledger(tmp_path / "w.db", [call(datetime.now(timezone.utc) - timedelta(seconds=1), "gpt-4o-2024-08-06",
                                                  400_000, 0)])  # $1 today
    set_budget(db, "cap", limit="1", period="day", action="refuse")
    client = track(openai.OpenAI(api_key="sk-test-not-a-key", base_url=fake_openai.base_url, max_retries=0), db=db)
    with pytest.raises(BudgetExceeded, match="budget 'cap'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert fake_openai.received == []
    remove_budget(db, "cap")
    set_budget(db, "soft", limit="1", period="day", action="warn")
    with pytest.warns(BudgetWarning, match="budget 'soft'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert len(fake_openai.received) == 1


def test_check_budgets_on_a_ledger_not_yet_created(tmp_path):
    missing = tmp_path / "not-yet" / "ledger.db"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_budgets(missing, model="gpt-4o", estimated_cost_usd=Decimal(1), tags={})
    assert not missing.parent.exists()


INT64_MAX = 2**63 - 1  # SQLite INTEGER: the ledger keeps limits as signed 64-bit picodollars


@pytest.mark.parametrize("limit", ["10000000", "1e400", "9223372.036854775808", "1e999999999999", "nan", "inf"])
def test_cli_budget_limit_out_of_range_is_one_line_exit_2(db, limit):
    r = runner.invoke(app, ["budget", "set", "big", "--limit", limit, "--db", str(db)])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith(f"Error: bad --limit {limit!r}") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output and r.stdout == ""
    assert list_budgets(db) == []  # nothing written


def test_the_largest_limit_the_ledger_holds_is_stored_exactly(db):
    biggest = Decimal(INT64_MAX) / Decimal(10**12)
    assert format(biggest, "f") == "9223372.036854775807"
    b = set_budget(db, "big", limit=format(biggest, "f"))
    [stored] = list_budgets(db)
    assert b.limit_pusd == stored.limit_pusd == INT64_MAX and stored.limit_usd == biggest
    with pytest.raises(UsageError, match="at most"):
        set_budget(db, "big", limit=format(biggest + Decimal("1e-12"), "f"))
    with pytest.raises(UsageError, match="more than 12 decimal places"):
        set_budget(db, "tiny", limit="0.0000000000001")


@pytest.mark.parametrize("limit, shown", [("50", "$50.00"), ("12.5", "$12.50"), ("1e3", "$1,000.00"),
                                          ("0.000001", "$0.000001"), ("1,234.567", "$1,234.567")])
def test_cli_budget_set_prints_plain_dollars(db, limit, shown):
    r = runner.invoke(app, ["budget", "set", "b1", "--limit", limit, "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert r.stdout == f"Budget 'b1': {shown} per month for all calls, action warn.\n"
    [b] = list_budgets(db)
    assert b.limit_usd == Decimal(limit.replace(",", ""))


def test_cli_budget_status_shows_small_spend_and_unpriced_calls(db):
    now = datetime.now(timezone.utc)
    priced = call(now - timedelta(seconds=5), "gpt-4o-2024-08-06", 100, 20)
    unpriced = call(now - timedelta(seconds=5), UNPRICED, 50, 5)
    add(db, priced, unpriced)
    # By hand from RATES: 100 prompt x $2.50/1M + 20 completion x $10/1M = $0.00045.
    spent = Decimal(100) * Decimal("2.50") / 10**6 + Decimal(20) * Decimal(10) / 10**6
    assert spent == usd(priced["total_cost_pusd"]) == Decimal("0.00045")
    set_budget(db, "b1", limit="0.01", period="month")
    r = runner.invoke(app, ["budget", "status", "--db", str(db)])
    assert r.exit_code == 0, r.output
    head, _rule, row, *notes = r.stdout.splitlines()
    assert "unpriced calls" in head
    used = spent / Decimal("0.01") * 100
    assert f"{used:.1f}%" == "4.5%"
    assert "$0.000450 + unpriced" in row and "$0.010000" in row and " 4.5% " in row
    assert row.split()[-2:] == ["1", "ok"]  # one unpriced call, then the state
    assert notes and "'b1' (1)" in notes[0] and "not in spent" in notes[0]
    [doc] = json.loads(runner.invoke(app, ["budget", "status", "--db", str(db), "--format", "json"]).stdout)
    assert Decimal(doc["spent_usd"]) == spent and doc["unpriced_calls"] == 1


def test_cli_budget_set_warns_about_an_unknown_model(db):
    r = runner.invoke(app, ["budget", "set", "b1", "--limit", "5", "--model", "gpt5", "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("Warning: no known model matches 'gpt5'") and r.stderr.count("\n") == 1
    assert [b.models for b in list_budgets(db)] == [("gpt5",)]  # a warning, not a refusal
    # known names, aliases and fine-tunes of a known base need no warning
    r = runner.invoke(app, ["budget", "set", "b2", "--limit", "5", "--model", "gpt-4o", "--model", "gpt-4o-2024-08-06",
                            "--model", "ft:gpt-4o-mini-2024-07-18:my-org::abc123", "--db", str(db)])
    assert r.exit_code == 0 and r.stderr == ""
    r = runner.invoke(app, ["budget", "set", "b3", "--limit", "5", "--model", UNPRICED, "--db", str(db)])
    assert r.exit_code == 0 and f"no known model matches {UNPRICED!r}" in r.stderr
