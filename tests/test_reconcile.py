"""`tokencost reconcile`: the ledger against a hand-written file in the shape of OpenAI's usage API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_report_support import call, make_ledger
from tokencost.cli import app
from tokencost.errors import InputError
from tokencost.reconcile import Metrics, load_usage, reconcile

runner = CliRunner()
FIX = Path(__file__).parent / "fixtures" / "usage_api"
GROUPED = FIX / "completions_group_by_model.json"
D27 = datetime(2026, 11, 27, tzinfo=timezone.utc)
D28 = D27 + timedelta(days=1)
D29 = D28 + timedelta(days=1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    rows = [
        # 11-27 gpt-4o: 3 calls = 1200 in (200 cached) / 300 out, as the provider says
        call(D27 + timedelta(hours=1), "gpt-4o-2024-08-06", 400, 100, cached=200),
        call(D27 + timedelta(hours=2), "gpt-4o-2024-08-06", 400, 100),
        call(D27 + timedelta(hours=23, minutes=59, seconds=59), "gpt-4o-2024-08-06", 400, 100),
        # 11-27 gpt-4o-mini: the provider saw 2 calls (500/100), we logged 1
        call(D27 + timedelta(hours=3), "gpt-4o-mini-2024-07-18", 250, 50),
        # embeddings have their own usage endpoint: ignored
        call(D27 + timedelta(hours=4), "text-embedding-3-small", 999, 0, endpoint="embeddings"),
        # 11-28 gpt-4o: 2 calls = 800/150 match; gpt-4-0613 missing from the ledger
        call(D28 + timedelta(hours=1), "gpt-4o-2024-08-06", 300, 50),
        call(D28 + timedelta(hours=5), "gpt-4o-2024-08-06", 500, 100),
        # 11-28 a call the provider does not know about
        call(D28 + timedelta(hours=6), "gpt-4o-mini-2024-07-18", 10, 1, usage_source="estimated"),
        # 11-29: only a failed call (no tokens, not a request the model served): matches an empty bucket
        call(D29 + timedelta(hours=1), "gpt-4o-2024-08-06", status=429),
        # outside every bucket
        call(D29 + timedelta(days=1, hours=1), "gpt-4o-2024-08-06", 1, 1),
    ]
    return make_ledger(tmp_path / "l.db", rows)


def test_reconcile_finds_each_kind_of_gap(db):
    rec = reconcile(GROUPED, db)
    got = {(r.to_json()["day"], r.model): r for r in rec.rows}
    assert got[("2026-11-27", "gpt-4o-2024-08-06")].status == "match"
    mini = got[("2026-11-27", "gpt-4o-mini-2024-07-18")]
    assert mini.status == "differs" and mini.diff == Metrics(250, 0, 50, 1)
    assert got[("2026-11-28", "gpt-4o-2024-08-06")].status == "match"
    assert got[("2026-11-28", "gpt-4-0613")].status == "missing in ledger"
    extra = got[("2026-11-28", "gpt-4o-mini-2024-07-18")]
    assert extra.status == "missing at provider" and extra.ledger == Metrics(10, 0, 1, 1) and extra.estimated_calls == 1
    assert got[("2026-11-29", "gpt-4o")].status == "match"  # a 429: no tokens, no served request
    assert not any(m.startswith("text-embedding") for _, m in got)
    assert rec.summary() == {"match": 3, "differs": 1, "missing in ledger": 1, "missing at provider": 1}
    assert not rec.in_sync


def test_cli_reconcile_json_and_check(db):
    r = runner.invoke(app, ["reconcile", str(GROUPED), "--db", str(db), "--format", "json", "--gaps-only"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["window"] == {"start": "2026-11-27T00:00:00Z", "end": "2026-11-30T00:00:00Z"}
    assert doc["incomplete"] is False and r.stderr == ""
    assert [(x["day"], x["model"], x["status"]) for x in doc["rows"]] == [
        ("2026-11-27", "gpt-4o-mini-2024-07-18", "differs"),
        ("2026-11-28", "gpt-4-0613", "missing in ledger"),
        ("2026-11-28", "gpt-4o-mini-2024-07-18", "missing at provider"),
    ]
    assert doc["rows"][0]["provider"] == {"input_tokens": 500, "cached_tokens": 0, "output_tokens": 100, "requests": 2}
    assert doc["rows"][0]["diff"] == {"input_tokens": 250, "cached_tokens": 0, "output_tokens": 50, "requests": 1}
    r = runner.invoke(app, ["reconcile", str(GROUPED), "--db", str(db), "--check"])
    assert r.exit_code == 1
    assert "1 differs" in r.stdout and "1,000 / - (+1,000)" in r.stdout


def test_ungrouped_list_of_buckets_compares_all_models_together(db):
    buckets, grouped = load_usage(FIX / "completions_ungrouped_buckets.json")
    assert not grouped and buckets[0].by_model == {"(all models)": Metrics(1700, 200, 400, 5)}
    rec = reconcile(FIX / "completions_ungrouped_buckets.json", db)
    [row] = rec.rows
    assert row.ledger == Metrics(1450, 200, 350, 4) and row.diff == Metrics(250, 0, 50, 1)


@pytest.mark.parametrize("content, msg", [
    ("{not json", "line 1, column 2: invalid JSON"),
    ('{"object": "list"}', "expected a usage page"),
    ('[{"object": "bucket", "start_time": 10, "end_time": 5, "results": []}]', "end_time 5 is not after"),
    ('{"data": [{"object": "bucket", "start_time": 0, "end_time": 86400, "results": [{"input_tokens": -1}]}]}',
     "data[0].results[0].input_tokens"),
    ('{"data": [{"start_time": 0, "end_time": 86400, "results": [{"object": "organization.costs.result"}]}]}',
     "not a completions usage result"),
])
def test_bad_usage_files(tmp_path, db, content, msg):
    f = tmp_path / "usage.json"
    f.write_text(content)
    with pytest.raises(InputError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        load_usage(f)
    r = runner.invoke(app, ["reconcile", str(f), "--db", str(db)])
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: {f}: ") and "Traceback" not in r.output


def test_missing_usage_file(db, tmp_path):
    r = runner.invoke(app, ["reconcile", str(tmp_path / "nope.json"), "--db", str(db)])
    assert r.exit_code == 2 and "nope.json: no such file" in r.stderr


def test_a_truncated_download_is_flagged(db, tmp_path):
    page = json.loads(GROUPED.read_text())
    page["has_more"], page["next_page"] = True, "page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="
    f = tmp_path / "page1.json"
    f.write_text(json.dumps(page))
    r = runner.invoke(app, ["reconcile", str(f), "--db", str(db), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["incomplete"] is True
    assert "has_more: true" in r.stderr


@pytest.mark.parametrize("content, got", [
    ("[]", "an empty list"),
    ('{"object": "list", "data": []}', "got object 'list'"),
    ("5", "got a JSON number"),
])
def test_input_that_is_not_a_usage_page_is_exit_2(tmp_path, db, content, got):
    f = tmp_path / "usage.json"
    f.write_text(content)
    with pytest.raises(InputError, match=got):
        load_usage(f)
    r = runner.invoke(app, ["reconcile", str(f), "--db", str(db)])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith(f"Error: {f}: ") and got in r.stderr and r.stderr.count("\n") == 1
    assert 'expected a usage page {"object": "page", "data": [bucket, ...]}' in r.stderr and r.stdout == ""


def test_an_empty_page_says_there_are_no_buckets(tmp_path, db):
    f = tmp_path / "usage.json"
    f.write_text(json.dumps({"object": "page", "data": [], "has_more": False, "next_page": None}))
    assert load_usage(f) == ([], True)
    r = runner.invoke(app, ["reconcile", str(f), "--db", str(db), "--check"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(f"No buckets in {f}") and r.stderr.count("\n") == 1 and r.stdout == ""
    r = runner.invoke(app, ["reconcile", str(f), "--db", str(db), "--format", "json"])
    assert r.exit_code == 0 and "No buckets" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["rows"] == [] and doc["window"] is None
