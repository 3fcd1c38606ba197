"""Ledger factories shared by the report, budget, calibrate and reconcile tests.

Rows go in through the real ledger (``tokencost.ledger.open_ledger`` creates and migrates the
schema); expected numbers are always recomputed in the test from the very rows inserted here.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

COLUMNS = (
    "id", "started_at", "latency_ms", "endpoint", "model_requested", "model", "prompt_tokens",
    "completion_tokens", "cached_tokens", "reasoning_tokens", "total_tokens", "prompt_cost_pusd",
    "completion_cost_pusd", "total_cost_pusd", "price_id", "price_source", "usage_source",
    "estimated_prompt_tokens", "status", "error_type", "request_id", "streamed", "tags", "app", "via",
    "prompt_text", "completion_text",
)

# Picodollars per token (= USD per 1M tokens x 1e6): made-up but realistic rates.
RATES = {
    "gpt-4o-2024-08-06": (2_500_000, 10_000_000),
    "gpt-4o-mini-2024-07-18": (150_000, 600_000),
    "gpt-4-0613": (30_000_000, 60_000_000),
}
UNPRICED = "my-finetune-x"  # tokens but no price row: cost NULL, never 0


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def call(started: datetime, model: str = "gpt-4o-2024-08-06", prompt: int = 100, completion: int = 20,
         cached: int = 0, *, status: int | None = 200, error_type: str | None = None,
         usage_source: str = "api", estimated_prompt: int | None = None, tags: dict | None = None,
         app: str | None = None, endpoint: str = "chat.completions", requested: str | None = None) -> dict:
    """One ledger row in the contract schema, priced with RATES (None cost for UNPRICED)."""
    failed = status is None or status >= 400
    if failed:
        prompt = completion = cached = 0
    rate = RATES.get(model)
    pc = cc = tc = None
    if rate and not failed:
        pc = (prompt - cached) * rate[0] + cached * (rate[0] // 2)
        cc = completion * rate[1]
        tc = pc + cc
    return {
        "id": uuid.uuid4().hex, "started_at": iso(started), "latency_ms": 123.4, "endpoint": endpoint,
        "model_requested": requested or model.rsplit("-2", 1)[0], "model": None if failed else model,
        "prompt_tokens": None if failed else prompt, "completion_tokens": None if failed else completion,
        "cached_tokens": None if failed else cached, "reasoning_tokens": 0, "total_tokens": None if failed else prompt + completion,
        "prompt_cost_pusd": pc, "completion_cost_pusd": cc, "total_cost_pusd": tc,
        "price_id": f"{model}@2024-08-06" if rate else None, "price_source": "https://openai.com/api/pricing" if rate else None,
        "usage_source": None if failed else usage_source, "estimated_prompt_tokens": estimated_prompt,
        "status": status, "error_type": error_type if error_type or not failed else ("RateLimitError" if status else "APIConnectionError"),
        "request_id": "req_" + uuid.uuid4().hex[:12], "streamed": 0, "tags": json.dumps(tags or {}),
        "app": app, "via": "wrap", "prompt_text": None, "completion_text": None,
    }


def sample_rows(seed: int = 7, n: int = 400, start: datetime | None = None) -> list[dict]:
    """A varied week of traffic: 3 priced models + an unpriced one, failures, estimated streams,
    cached tokens, tags (user, team), two apps, a DST-free UTC week."""
    rnd = random.Random(seed)
    start = start or datetime(2026, 11, 20, tzinfo=timezone.utc)
    models = list(RATES) + [UNPRICED]
    out = []
    for i in range(n):
        t = start + timedelta(seconds=rnd.randrange(7 * 86400), microseconds=rnd.randrange(10**6))
        m = rnd.choice(models)
        p = rnd.randrange(5, 5000)
        kind = rnd.random()
        kw: dict[str, Any] = {
            "tags": {"user": rnd.choice(["u1", "u2", "u3"]), "team": rnd.choice(["search", "chat"])},
            "app": rnd.choice(["bot", "batch"]),
            "estimated_prompt": p + rnd.choice([0, 0, 0, 0, 1, -2, 3]),
        }
        if kind < 0.05:
            kw["status"] = 429
        elif kind < 0.07:
            kw["status"] = None
        elif kind < 0.12:
            kw["usage_source"] = "estimated"
        out.append(call(t, m, p, rnd.randrange(0, 800), rnd.choice([0, 0, min(p, 1024)]), **kw))
    return out


def create_schema(con: sqlite3.Connection) -> None:
    """The contract schema, for ledgers this file builds by hand (older-schema tests)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS calls ({', '.join(c + (' TEXT PRIMARY KEY' if c == 'id' else '') for c in COLUMNS)})")
    con.execute("CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, limit_pusd INTEGER, period TEXT,"
                " models TEXT, tags TEXT, action TEXT, created_at TEXT)")


def make_ledger(path: Path, rows: Iterable[dict]) -> Path:
    """A ledger file created and migrated by the real ledger code, holding exactly ``rows``,
    each written with ``Ledger.record`` (one committed transaction per row, as in production)."""
    import warnings

    from tokencost.ledger import open_ledger

    rows = list(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a spooled (not written) row would be a LedgerWarning
        with open_ledger(path) as led:
            for r in rows:
                led.record(r)
            assert led.count() >= len(rows)
    return path


def add_rows(path: Path, *rows: dict) -> None:
    """Append rows to an existing ledger through the real ``Ledger.record``."""
    make_ledger(path, rows)


def bulk_insert(con: sqlite3.Connection, rows: Iterable[dict]) -> None:
    """executemany for big synthetic ledgers (benchmarks), same columns as the contract."""
    con.executemany(f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    (tuple(r[c] for c in COLUMNS) for r in rows))


def usd(pico: int) -> Decimal:
    return Decimal(pico) / Decimal(10**12)


def test_sample_rows_cover_the_cases_the_reports_must_handle():
    rows = sample_rows()
    assert any(r["status"] == 429 for r in rows) and any(r["status"] is None for r in rows)
    assert any(r["usage_source"] == "estimated" for r in rows)
    assert any(r["model"] == UNPRICED and r["total_cost_pusd"] is None and r["prompt_tokens"] for r in rows)
    assert any(r["cached_tokens"] for r in rows)
