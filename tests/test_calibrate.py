"""`tokencost calibrate`: our prompt-token estimate against the API's number, per model and endpoint."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from tests.test_report_support import call, make_ledger, sample_rows
from tokencost.calibrate import calibrate
from tokencost.cli import app

runner = CliRunner()


def test_calibration_matches_the_rows(tmp_path: Path):
    rows = sample_rows(seed=11)
    t = datetime(2026, 11, 28, tzinfo=timezone.utc)
    rows += [call(t, endpoint="responses", prompt=50, estimated_prompt=None),  # no estimate: left out
             call(t, endpoint="responses", prompt=70, estimated_prompt=75)]
    db = make_ledger(tmp_path / "l.db", rows)
    want: dict = defaultdict(list)
    for r in rows:
        if r["usage_source"] == "api" and r["prompt_tokens"] is not None and r["estimated_prompt_tokens"] is not None:
            want[(r["model"], r["endpoint"])].append(r["prompt_tokens"] - r["estimated_prompt_tokens"])
    got = {(c.model, c.endpoint): c for c in calibrate(db)}
    assert set(got) == set(want)
    for k, diffs in want.items():
        c = got[k]
        assert c.calls == len(diffs)
        assert c.exact == sum(d == 0 for d in diffs)
        assert c.max_abs_diff == max(abs(d) for d in diffs)
        assert c.mean_diff == (Decimal(sum(diffs)) / len(diffs)).quantize(Decimal("0.01"))
        assert c.exact_rate == (Decimal(c.exact) / len(diffs)).quantize(Decimal("0.0001"))
    assert got[("gpt-4o-2024-08-06", "responses")].max_abs_diff == 5


def test_cli_calibrate_json_and_table(tmp_path: Path):
    t = datetime(2026, 11, 28, tzinfo=timezone.utc)
    rows = [call(t, "gpt-4o-2024-08-06", 100, estimated_prompt=100), call(t, "gpt-4o-2024-08-06", 200, estimated_prompt=197),
            call(t, "gpt-4o-2024-08-06", 300, estimated_prompt=300, usage_source="estimated"),  # not API-reported
            call(t, "gpt-4-0613", 10, estimated_prompt=12)]
    db = make_ledger(tmp_path / "l.db", rows)
    r = runner.invoke(app, ["calibrate", "--db", str(db), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [
        {"model": "gpt-4o-2024-08-06", "endpoint": "chat.completions", "calls": 2, "exact": 1, "exact_rate": "0.5000",
         "mean_diff": "1.50", "mean_abs_diff": "1.50", "max_abs_diff": 3},
        {"model": "gpt-4-0613", "endpoint": "chat.completions", "calls": 1, "exact": 0, "exact_rate": "0.0000",
         "mean_diff": "-2.00", "mean_abs_diff": "2.00", "max_abs_diff": 2},
    ]
    r = runner.invoke(app, ["calibrate", "--db", str(db)])
    assert r.exit_code == 0
    assert r.stdout.splitlines()[2].split() == ["gpt-4o-2024-08-06", "chat.completions", "2", "1", "50.00%", "+1.50", "1.50", "3"]


def test_cli_calibrate_empty(tmp_path: Path):
    db = make_ledger(tmp_path / "e.db", [])
    r = runner.invoke(app, ["calibrate", "--db", str(db)])
    assert r.exit_code == 0 and r.stdout == "" and "No calls with both" in r.stderr
