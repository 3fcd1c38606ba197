"""Reconcile the ledger with OpenAI's own numbers: the organization Usage API for completions.

Input: the JSON of ``GET /v1/organization/usage/completions`` (best with ``group_by=["model"]``
and ``bucket_width="1d"``), in the shape shown by the OpenAI cookbook's "Completions Usage API"
example (examples/completions_usage_api.ipynb): a page ``{"object": "page", "data": [bucket, ...],
"has_more", "next_page"}``; a list of such pages; or a list of buckets (what the cookbook's
``get_data`` collects). A bucket is ``{"object": "bucket", "start_time", "end_time", "results":
[{"object": "organization.usage.completions.result", "input_tokens", "input_cached_tokens",
"output_tokens", "num_model_requests", "model", ...}]}``, times in Unix seconds.

Each bucket is compared with the ledger calls that started inside ``[start_time, end_time)``,
per model (or for all models together when the file was not grouped by model). Ledger side:
``input`` = prompt tokens (cached included, as the API counts them), ``cached``, ``output`` =
completion tokens, ``requests`` = calls answered with a 2xx status; embeddings calls are left out
(they have their own usage endpoint).

JSON contract (``tokencost reconcile FILE --format json``)::

    {"window": {"start": "2026-11-27T00:00:00Z", "end": "2026-11-30T00:00:00Z"},
     "incomplete": false,                  # true: the file's last page says has_more (fetch next_page)
     "rows": [{"day": "2026-11-28", "bucket_start": "...Z", "bucket_end": "...Z",
               "model": "gpt-4o-2024-08-06" | "(all models)",
               "status": "match" | "differs" | "missing in ledger" | "missing at provider",
               "provider": METRICS | null, "ledger": METRICS | null,
               "diff": METRICS,            # provider - ledger (missing side counts as 0)
               "estimated_calls": int}],   # ledger calls whose usage tokencost estimated
     "summary": {"match": n, "differs": n, "missing in ledger": n, "missing at provider": n}}
    METRICS = {"input_tokens": int, "cached_tokens": int, "output_tokens": int, "requests": int}
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InputError, LedgerError
from .spend import MODEL_SQL, connect

__all__ = ["Bucket", "Metrics", "ReconcileRow", "Reconciliation", "load_usage", "reconcile"]

ALL_MODELS = "(all models)"
STATUSES = ("match", "differs", "missing in ledger", "missing at provider")


@dataclass(frozen=True)
class Metrics:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, o: "Metrics") -> "Metrics":
        return Metrics(self.input_tokens + o.input_tokens, self.cached_tokens + o.cached_tokens,
                       self.output_tokens + o.output_tokens, self.requests + o.requests)

    def __sub__(self, o: "Metrics") -> "Metrics":
        return Metrics(self.input_tokens - o.input_tokens, self.cached_tokens - o.cached_tokens,
                       self.output_tokens - o.output_tokens, self.requests - o.requests)

    def to_json(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "cached_tokens": self.cached_tokens,
                "output_tokens": self.output_tokens, "requests": self.requests}


@dataclass(frozen=True)
class Bucket:
    start: int  # Unix seconds
    end: int
    by_model: dict[str, Metrics]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _z(ts: int) -> str:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(v: Any, where: str, field: str, file: str, required: bool = True) -> int:
    if v is None and not required:
        return 0
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"{where}.{field}: expected a non-negative integer, got {v!r}", where=file)
    return v


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


def load_usage(path: str | Path) -> tuple[list[Bucket], bool]:
    """Parse a usage file -> (buckets sorted by start, grouped_by_model). InputError on bad shape."""
    buckets, grouped, _ = _load(path)
    return buckets, grouped


def _load(path: str | Path) -> tuple[list[Bucket], bool, bool]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file; pass the JSON saved from /v1/organization/usage/completions",
                         where=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=str(p)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}", where=str(p)) from None

    shape = ("a usage page {\"object\": \"page\", \"data\": [bucket, ...]} (or a list of pages or buckets) "
             "as saved from /v1/organization/usage/completions")
    if isinstance(doc, list) and not doc:
        # Nothing says what [] was meant to be; an empty download is a page with "data": [].
        raise InputError(f"an empty list; expected {shape}", where=str(p))
    raw: list[tuple[str, Any]] = []
    pages = doc if isinstance(doc, list) else [doc]
    # The last page saying has_more means the download stopped early: say so, never guess.
    more = bool(pages) and isinstance(pages[-1], dict) and pages[-1].get("has_more") is True
    for i, page in enumerate(pages):
        here = f"[{i}]" if isinstance(doc, list) else "$"
        if isinstance(page, dict) and page.get("object") == "bucket":
            raw.append((here, page))
        elif (isinstance(page, dict) and isinstance(page.get("data"), list)
              and page.get("object", "page") == "page"):  # another endpoint's list is not usage
            raw += [(f"{here}.data[{j}]", b) for j, b in enumerate(page["data"])]
        else:
            got = f"object {page.get('object')!r}" if isinstance(page, dict) and "object" in page \
                else f"a JSON {_json_type(page)}"
            raise InputError(f"{here}: got {got}; expected {shape}", where=str(p))
    buckets: list[Bucket] = []
    grouped = True
    for here, b in raw:
        if not isinstance(b, dict) or not isinstance(b.get("results"), list):
            raise InputError(f"{here}: a bucket needs start_time, end_time and a results list", where=str(p))
        start = _int(b.get("start_time"), here, "start_time", str(p))
        end = _int(b.get("end_time"), here, "end_time", str(p))
        if end <= start:
            raise InputError(f"{here}: end_time {end} is not after start_time {start}", where=str(p))
        by_model: dict[str, Metrics] = {}
        for k, r in enumerate(b["results"]):
            rw = f"{here}.results[{k}]"
            if not isinstance(r, dict):
                raise InputError(f"{rw}: expected an object", where=str(p))
            obj = r.get("object")
            if obj is not None and obj != "organization.usage.completions.result":
                raise InputError(f"{rw}: object is {obj!r}, not a completions usage result "
                                 "(costs and other usage endpoints are not supported)", where=str(p))
            model = r.get("model")
            if model is None:
                grouped = False
            m = Metrics(_int(r.get("input_tokens"), rw, "input_tokens", str(p)),
                        _int(r.get("input_cached_tokens"), rw, "input_cached_tokens", str(p), required=False),
                        _int(r.get("output_tokens"), rw, "output_tokens", str(p)),
                        _int(r.get("num_model_requests"), rw, "num_model_requests", str(p)))
            key = str(model) if model is not None else ALL_MODELS
            by_model[key] = by_model.get(key, Metrics()) + m
        buckets.append(Bucket(start, end, by_model))
    if not grouped:  # results without a model: compare whole buckets, all models together
        buckets = [Bucket(b.start, b.end, {ALL_MODELS: sum(b.by_model.values(), Metrics())} if b.by_model else {})
                   for b in buckets]
    buckets.sort(key=lambda b: b.start)
    for a, b in zip(buckets, buckets[1:]):
        if b.start < a.end:
            raise InputError(f"buckets {_z(a.start)} and {_z(b.start)} overlap; pass one bucket_width",
                             where=str(p))
    return buckets, grouped, more


@dataclass(frozen=True)
class ReconcileRow:
    bucket_start: int
    bucket_end: int
    model: str
    provider: Metrics | None
    ledger: Metrics | None
    estimated_calls: int = 0

    @property
    def diff(self) -> Metrics:
        return (self.provider or Metrics()) - (self.ledger or Metrics())

    @property
    def status(self) -> str:
        if self.diff == Metrics():
            return "match"  # includes a side that reported only zeros
        if self.ledger is None:
            return "missing in ledger"
        if self.provider is None:
            return "missing at provider"
        return "differs"

    def to_json(self) -> dict[str, Any]:
        return {"day": _utc(self.bucket_start).date().isoformat(), "bucket_start": _z(self.bucket_start),
                "bucket_end": _z(self.bucket_end), "model": self.model, "status": self.status,
                "provider": self.provider.to_json() if self.provider else None,
                "ledger": self.ledger.to_json() if self.ledger else None,
                "diff": self.diff.to_json(), "estimated_calls": self.estimated_calls}


@dataclass(frozen=True)
class Reconciliation:
    rows: list[ReconcileRow]
    start: int | None
    end: int | None
    incomplete: bool = False  # the file's last page has has_more: true
    buckets: int = 0  # time buckets in the usage file (0: a well-formed but empty page)

    def summary(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows:
            out[r.status] += 1
        return out

    @property
    def in_sync(self) -> bool:
        return all(r.status == "match" for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"window": {"start": _z(self.start), "end": _z(self.end)} if self.start is not None else None,
                "incomplete": self.incomplete,
                "rows": [r.to_json() for r in self.rows], "summary": self.summary()}


def _iso(ts: int) -> str:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reconcile(usage_file: str | Path, db: str | Path | None = None, *,
              con: sqlite3.Connection | None = None) -> Reconciliation:
    """Compare each usage bucket with the ledger, per model. One SQL query over the window."""
    buckets, grouped, more = _load(usage_file)
    if not buckets:
        return Reconciliation([], None, None, more, 0)
    own = con is None
    path = None
    if con is None:
        con, path = connect(db)
    case = " ".join(f"WHEN started_at >= '{_iso(b.start)}' AND started_at < '{_iso(b.end)}' THEN {i}"
                    for i, b in enumerate(buckets))
    model_sql = MODEL_SQL if grouped else f"'{ALL_MODELS}'"
    sql = f"""SELECT * FROM (
      SELECT CASE {case} END AS bucket, {model_sql} AS m,
        SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens),
        SUM(status BETWEEN 200 AND 299), SUM(usage_source = 'estimated')
      FROM calls
      WHERE started_at >= ? AND started_at < ? AND endpoint IS NOT 'embeddings'
      GROUP BY 1, 2) WHERE bucket IS NOT NULL"""
    try:
        got = con.execute(sql, [_iso(buckets[0].start), _iso(buckets[-1].end)]).fetchall()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path or ''}: {exc}") from None
    finally:
        if own:
            con.close()
    ledger: dict[tuple[int, str], tuple[Metrics, int]] = {}
    for i, m, inp, cached, out, req, est in got:
        ledger[(i, str(m))] = (Metrics(int(inp or 0), int(cached or 0), int(out or 0), int(req or 0)), int(est or 0))
    rows: list[ReconcileRow] = []
    for i, b in enumerate(buckets):
        models = sorted(set(b.by_model) | {m for (j, m) in ledger if j == i})
        for m in models:
            led = ledger.get((i, m))
            rows.append(ReconcileRow(b.start, b.end, m, b.by_model.get(m), led[0] if led else None,
                                     led[1] if led else 0))
    return Reconciliation(rows, buckets[0].start, buckets[-1].end, more, len(buckets))
