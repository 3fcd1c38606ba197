"""``tokencost calls`` and ``tokencost db path``: exact output (ids and times masked), real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fakeserver import FIXTURES
from tests.ledger_helpers import template_record
from tokencost.cli import app
from tokencost.ledger import Ledger

runner = CliRunner()


def gpt35_record(when: datetime, **kw):
    body = json.loads((FIXTURES / "chat_completion_gpt-3.5-turbo.json").read_text())
    return template_record(started_at=when, response=body, tags={"user": "bob"},
                           request={"model": "gpt-3.5-turbo",
                                    "messages": [{"role": "user", "content": "Say this is a test!"}]}, **kw)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    led = Ledger(path)
    led.record(template_record(started_at=datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)))
    led.record(gpt35_record(datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc)))
    led.record(template_record(started_at=datetime(2026, 11, 29, 8, 15, tzinfo=timezone.utc), response=None,
                               status=429, error_type="RateLimitError"))
    led.close()
    return path


def test_calls_table_newest_first(db: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        "started (UTC)        endpoint          model               prompt  completion       cost  usage  status  error           tags",
        "-------------------  ----------------  ------------------  ------  ----------  ---------  -----  ------  --------------  ------------",
        "2026-11-29 08:15:00  chat.completions  gpt-4o                   0           0  $0.000000  -      429     RateLimitError  feature=test",
        "2026-11-28 09:30:00  chat.completions  gpt-3.5-turbo-0125      13           5  $0.000014  api    200                     user=bob",
        "2026-11-27 09:00:00  chat.completions  gpt-4o-2024-08-06       14          37  $0.000405  api    200                     feature=test",
    ]


def test_calls_json_contract(db: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", str(db), "--format", "json", "--model", "gpt-3.5-turbo"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert len(row["id"]) == 32
    row["id"] = "<id>"
    assert row == {
        "id": "<id>", "started_at": "2026-11-28T09:30:00.000000Z", "endpoint": "chat.completions",
        "model_requested": "gpt-3.5-turbo", "model": "gpt-3.5-turbo-0125", "prompt_tokens": 13,
        "completion_tokens": 5, "cached_tokens": 0, "reasoning_tokens": 0, "total_tokens": 18,
        "prompt_cost_usd": "0.000006500000", "completion_cost_usd": "0.000007500000",
        "total_cost_usd": "0.000014000000", "price_id": "gpt-3.5-turbo-0125@2024-01-25", "usage_source": "api",
        "estimated_prompt_tokens": 13, "status": 200, "error_type": None, "request_id": None, "streamed": False,
        "latency_ms": 3.0, "tags": {"user": "bob"}, "app": None, "via": "wrap",
    }


def test_calls_csv_and_filters(db: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", str(db), "--format", "csv", "--since", "2026-11-28", "--limit", "1"])
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["started_at"] for r in rows] == ["2026-11-29T08:15:00.000000Z"]
    assert rows[0]["total_cost_usd"] == "0.000000000000" and rows[0]["status"] == "429"


def test_calls_empty_and_missing(tmp_path: Path, db: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", str(db), "--since", "2030-01-01"])
    assert res.exit_code == 0 and res.stdout.startswith("No calls in ")
    missing = tmp_path / "nope.db"
    res = runner.invoke(app, ["calls", "--db", str(missing)])
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.strip() == (
        f"Error: no ledger at {missing} — nothing has been recorded there yet; pass --db PATH or set "
        "TOKENCOST_DB (`tokencost db path` shows the default)"
    )
    assert not missing.exists()


def test_bad_since_is_usage_error(db: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", str(db), "--since", "last week"])
    assert res.exit_code == 2
    assert "Error: invalid date 'last week' for --since" in res.stderr
    assert "Traceback" not in res.output


def test_db_path_subprocess(tmp_path: Path) -> None:
    env = dict(os.environ, TOKENCOST_DB=str(tmp_path / "env.db"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "tokencost", *a], env=env, capture_output=True,
                                    text=True, timeout=60)
    out = run("db", "path")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{tmp_path / 'env.db'}\n", "")
    out = run("db", "path", "--db", str(tmp_path / "x.db"))
    assert out.stdout == f"{tmp_path / 'x.db'}\n"
    env.pop("TOKENCOST_DB")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    out = run("db", "path")
    assert out.stdout == f"{tmp_path / 'data' / 'tokencost' / 'ledger.db'}\n"


def test_calls_subprocess_corrupt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 100)
    out = subprocess.run([sys.executable, "-m", "tokencost", "calls", "--db", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith(f"Error: ledger {bad} is not a readable SQLite database")
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_no_response_shows_dash_status_and_the_error_type_in_its_own_column(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    led = Ledger(db)
    led.record(template_record(started_at=datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc), response=None,
                               status=None, error_type="APIConnectionError", tags={}))
    led.close()
    res = runner.invoke(app, ["calls", "--db", str(db)])
    assert res.exit_code == 0, res.output
    header, _, line = res.stdout.splitlines()
    cells = dict(zip(header.split(), line.split()))  # no cell here contains a space
    assert cells["status"] == "-" and cells["error"] == "APIConnectionError"
    res = runner.invoke(app, ["calls", "--db", str(db), "--format", "json"])
    row = json.loads(res.stdout)[0]
    assert (row["status"], row["error_type"]) == (None, "APIConnectionError")


def test_db_empty_or_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["calls", "--db", ""])
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == "Error: --db is empty; give the ledger file's path (or leave --db out for the default)\n"
    res = runner.invoke(app, ["calls", "--db", str(tmp_path)])
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == f"Error: {tmp_path} is a directory; give a file path (e.g. {tmp_path / 'ledger.db'})\n"
    assert list(tmp_path.iterdir()) == []  # nothing created inside it


def test_calls_waiting_in_the_spool_are_counted_then_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import tokencost._spool as spool_mod

    monkeypatch.setattr(spool_mod, "_warned", set())  # our warnings here must not silence later tests'
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blocker = tmp_path / "data"
    blocker.write_text("a file where the ledger's directory should be")  # every write of the db fails
    db = blocker / "ledger.db"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            Ledger(db).record(template_record())
    spool = Ledger(db).fallback_spool_path
    res = runner.invoke(app, ["calls", "--db", str(db)])
    assert (res.exit_code, res.stdout) == (1, "")
    assert res.stderr == (f"Error: no ledger at {db} yet, but 2 calls wait in {spool} (the ledger could not be "
                          "written); they are merged into it the next time it opens successfully\n")
    blocker.unlink()
    blocker.mkdir()  # the problem is fixed: the next recorded call opens the ledger and merges
    Ledger(db).record(template_record())
    res = runner.invoke(app, ["calls", "--db", str(db), "--format", "json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
    assert not spool.exists()
