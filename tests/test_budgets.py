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

from tests.test_report_support import add_rows, call, make_ledger, usd
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
    assert r.exit_code == 0 and r.stdout == "Budget 'daily': $1 per day for all calls, action warn.\n"
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
