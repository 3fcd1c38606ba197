"""Exact spend aggregates of the ledger, computed in SQLite (no pandas here).

SQLite does the work (one ``GROUP BY`` over ``calls``, integer sums of picodollars), so memory
depends on the number of groups, never on the number of calls. Money stays an ``int`` of
picodollars until :func:`usd` turns it into an exact :class:`~decimal.Decimal`; no float ever
touches a cost. :mod:`tokencost.reports` shapes these aggregates with pandas and documents the
JSON contract of :meth:`Report.to_json`.

Group keys (``--by``): ``model``, ``day``, ``week`` (the Monday that starts it), ``month``,
``endpoint``, ``user`` (the ``user`` tag), ``app``, ``tag:KEY``. Time keys use ``tz`` (UTC by
default), with daylight-saving changes handled exactly.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Sequence

from .errors import LedgerError, UsageError
from .filters import Filters, build_filters, get_zone, iso_z, json_path, parse_tags, parse_when

__all__ = [
    "GROUP_KEYS",
    "TIME_KEYS",
    "Filters",
    "Group",
    "Report",
    "build_filters",
    "connect",
    "ledger_path",
    "parse_by",
    "parse_tags",
    "parse_when",
    "report",
    "usd",
]

GROUP_KEYS: tuple[str, ...] = ("model", "day", "week", "month", "endpoint", "user", "app", "tag:KEY")
TIME_KEYS = frozenset({"day", "week", "month"})
PICO = Decimal(10) ** 12

# A call failed if the API said so, the connection broke (status NULL) or the stream broke.
FAILED_SQL = "(status IS NULL OR status >= 400 OR error_type IS NOT NULL)"
TOKENS_SQL = "(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0))"
MODEL_SQL = "COALESCE(model, model_requested)"


def usd(pico: int | None) -> Decimal | None:
    """Integer picodollars -> exact USD Decimal (None stays None)."""
    if pico is None:
        return None
    return (Decimal(pico) / PICO).normalize() if pico else Decimal(0)


def usd_str(pico: int | None) -> str | None:
    d = usd(pico)
    return None if d is None else format(d, "f")


# --------------------------------------------------------------------------- opening the ledger


def ledger_path(db: str | Path | None = None, *, must_exist: bool = True) -> Path:
    """The ledger file, opened once through :func:`tokencost.ledger.open_ledger` so that an older
    schema is migrated (and a missing file is a LedgerError naming the path when ``must_exist``)."""
    from .ledger import Ledger

    led = Ledger(db)
    try:
        led.open(must_exist=must_exist)
    except LedgerError:
        # A ledger we may read but not write (a copy, a read-only mount) still gets a report.
        if must_exist and led.path.is_file() and not os.access(led.path, os.W_OK):
            return led.path
        raise
    finally:
        led.close()
    return led.path


def connect(db: str | Path | None = None) -> tuple[sqlite3.Connection, Path]:
    """Open the ledger read-only (after :func:`ledger_path` migrated it); returns (connection, path)."""
    path = ledger_path(db, must_exist=True)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.execute("SELECT 1 FROM calls LIMIT 0")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    return con, path


# --------------------------------------------------------------------------- parsing options


def parse_by(keys: Sequence[str]) -> tuple[str, ...]:
    """Validate ``--by`` keys; unknown ones raise UsageError listing the valid ones."""
    out: list[str] = []
    for raw in keys:
        key = raw.strip()
        ok = key in GROUP_KEYS and key != "tag:KEY" or (key.startswith("tag:") and len(key) > 4)
        if not ok:
            raise UsageError(
                f"unknown --by key {raw!r}; valid keys: {', '.join(GROUP_KEYS)} "
                "(e.g. --by tag:team)"
            )
        if key in out:
            raise UsageError(f"--by {key} given twice")
        out.append(key)
    return tuple(out)


# --------------------------------------------------------------------------- SQL


def _grain_sql(zone: Any, lo: str | None, hi: str | None) -> tuple[str, int]:
    """SQL for the UTC time grain that time keys are built from, and its length in minutes.

    Per-row work stays a ``substr`` (SQLite's date functions cost several times more on a big
    ledger): the UTC day when ``tz`` is UTC, else the UTC hour (or quarter-hour for zones whose
    offset in the ledger's time range is not whole hours). Python then maps each grain to its
    local day, week or month, exactly, DST included, since no grain straddles an offset change.
    """
    if zone is timezone.utc:
        return "substr(started_at, 1, 10)", 24 * 60
    if lo is not None and hi is not None:
        t, stop = _parse_started(lo) - timedelta(days=1), _parse_started(hi) + timedelta(days=1)
        while t <= stop:
            if t.astimezone(zone).utcoffset() % timedelta(hours=1):  # type: ignore[operator]
                return "substr(started_at, 1, 14) || (CAST(substr(started_at, 15, 2) AS INTEGER) / 15)", 15
            t += timedelta(days=7)
    return "substr(started_at, 1, 13)", 60


def _grain_start(grain: str, minutes: int) -> datetime:
    if minutes == 24 * 60:
        return datetime.fromisoformat(grain).replace(tzinfo=timezone.utc)
    if minutes == 60:
        return datetime.fromisoformat(grain + ":00").replace(tzinfo=timezone.utc)
    base = datetime.fromisoformat(grain[:13] + ":00").replace(tzinfo=timezone.utc)
    return base + timedelta(minutes=15 * int(grain[14:]))


def _time_keys(grain: str | None, minutes: int, zone: Any, keys: Sequence[str]) -> list[str | None]:
    if grain is None:
        return [None for _ in keys]
    d = _grain_start(grain, minutes).astimezone(zone).date()
    out: list[str | None] = []
    for k in keys:
        if k == "day":
            out.append(d.isoformat())
        elif k == "week":
            out.append((d - timedelta(days=d.weekday())).isoformat())
        else:
            out.append(d.isoformat()[:7])
    return out


def _parse_started(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc)


def _key_sql(key: str) -> str:
    if key == "model":
        return MODEL_SQL
    if key in ("endpoint", "app"):
        return key
    if key == "user":
        return "json_extract(tags, '$.user')"
    return f"json_extract(tags, '{json_path(key[4:]).replace(chr(39), chr(39) * 2)}')"


AGG_SQL = f"""COUNT(*),
  SUM({FAILED_SQL}),
  SUM(usage_source = 'estimated'),
  SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
  SUM(prompt_cost_pusd), SUM(completion_cost_pusd), SUM(total_cost_pusd),
  SUM(total_cost_pusd IS NULL AND {TOKENS_SQL} > 0),
  SUM(CASE WHEN total_cost_pusd IS NULL THEN {TOKENS_SQL} ELSE 0 END),
  MIN(started_at), MAX(started_at)"""


@dataclass(frozen=True)
class Group:
    """One aggregated row. Money in integer picodollars; ``*_cost_pusd`` None = nothing priced."""

    keys: tuple[str | None, ...]
    calls: int = 0
    failed_calls: int = 0
    estimated_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prompt_cost_pusd: int | None = None
    completion_cost_pusd: int | None = None
    total_cost_pusd: int | None = None
    unpriced_calls: int = 0
    unpriced_tokens: int = 0
    first: str | None = None
    last: str | None = None

    @classmethod
    def from_sql(cls, keys: tuple[Any, ...], agg: Sequence[Any]) -> "Group":
        n = [int(x or 0) for x in agg[:6]]
        return cls(tuple(None if k is None else str(k) for k in keys), *n, agg[6], agg[7], agg[8],
                   int(agg[9] or 0), int(agg[10] or 0), agg[11], agg[12])

    def __add__(self, o: "Group") -> "Group":
        def s(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        firsts = [x for x in (self.first, o.first) if x]
        lasts = [x for x in (self.last, o.last) if x]
        return Group(self.keys, self.calls + o.calls, self.failed_calls + o.failed_calls,
                     self.estimated_calls + o.estimated_calls, self.prompt_tokens + o.prompt_tokens,
                     self.completion_tokens + o.completion_tokens, self.cached_tokens + o.cached_tokens,
                     s(self.prompt_cost_pusd, o.prompt_cost_pusd),
                     s(self.completion_cost_pusd, o.completion_cost_pusd),
                     s(self.total_cost_pusd, o.total_cost_pusd), self.unpriced_calls + o.unpriced_calls,
                     self.unpriced_tokens + o.unpriced_tokens, min(firsts, default=None),
                     max(lasts, default=None))

    @property
    def priced_calls(self) -> int:
        return self.calls - self.unpriced_calls

    @property
    def total_cost(self) -> Decimal | None:
        """Exact USD of the priced calls; None when the group's tokens are all unpriced."""
        if self.total_cost_pusd is None and self.unpriced_tokens:
            return None
        return usd(self.total_cost_pusd or 0)

    def metrics(self, grand_total_pusd: int) -> dict[str, Any]:
        tc = self.total_cost
        share = None
        if grand_total_pusd and self.total_cost_pusd is not None:
            share = format((Decimal(self.total_cost_pusd) / Decimal(grand_total_pusd)).quantize(
                Decimal("0.0001"), ROUND_HALF_EVEN), "f")
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "estimated_calls": self.estimated_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "prompt_cost_usd": None if tc is None else usd_str(self.prompt_cost_pusd or 0),
            "completion_cost_usd": None if tc is None else usd_str(self.completion_cost_pusd or 0),
            "total_cost_usd": None if tc is None else format(tc, "f"),
            "unpriced_calls": self.unpriced_calls,
            "unpriced_tokens": self.unpriced_tokens,
            "share": share,
        }


@dataclass(frozen=True)
class Report:
    by: tuple[str, ...]
    filters: Filters
    rows: list[Group]
    totals: Group
    db: Path | None = None

    @property
    def empty(self) -> bool:
        return self.totals.calls == 0

    def row_dicts(self) -> list[dict[str, Any]]:
        grand = self.totals.total_cost_pusd or 0
        return [{**dict(zip(self.by, g.keys)), **g.metrics(grand)} for g in self.rows]

    def to_json(self) -> dict[str, Any]:
        f = self.filters
        return {
            "by": list(self.by),
            "since": iso_z(f.since) if f.since else None,
            "until": iso_z(f.until) if f.until else None,
            "tz": f.tz,
            "period": {"first": self.totals.first, "last": self.totals.last} if self.totals.first else None,
            "rows": self.row_dicts(),
            "totals": self.totals.metrics(self.totals.total_cost_pusd or 0),
        }


def _sort(by: tuple[str, ...], rows: list[Group]) -> list[Group]:
    """Time keys ascending; other keys by their overall spend, biggest first, then by name."""
    weight: list[dict[str | None, int]] = []
    for i, k in enumerate(by):
        w: dict[str | None, int] = {}
        if k not in TIME_KEYS:
            for g in rows:
                w[g.keys[i]] = w.get(g.keys[i], 0) + (g.total_cost_pusd or 0)
        weight.append(w)

    def sort_key(g: Group) -> tuple[Any, ...]:
        out: list[Any] = []
        for i, k in enumerate(by):
            v = g.keys[i]
            if k in TIME_KEYS:
                out.append((v is None, v or ""))
            else:
                out.append((-weight[i].get(v, 0), v is None, v or ""))
        return tuple(out)

    return sorted(rows, key=sort_key)


PARALLEL_MIN_ROWS = 200_000  # below this, one query is as fast as any split


def report(db: str | Path | None = None, *, by: Sequence[str] = ("model",), filters: Filters | None = None,
           con: sqlite3.Connection | None = None, workers: int | None = None) -> Report:
    """Aggregate the ledger by ``by`` under ``filters``. Exact integer sums in SQLite.

    On a big ledger the same ``GROUP BY`` runs on ``workers`` disjoint rowid ranges at once, one
    read-only connection per thread (SQLite releases the GIL while it steps), and the partial
    groups are added up exactly in Python; rows appended after the report started are left out.
    """
    keys = parse_by(by)
    f = filters or Filters()
    path: Path | None = None
    own = con is None
    if con is None:
        con, path = connect(db)
    try:
        where, params = f.where()
        time_keys = [k for k in keys if k in TIME_KEYS]
        other = [k for k in keys if k not in TIME_KEYS]
        zone = get_zone(f.tz)
        grain_sql, minutes = None, 0
        # The period (first, last call): per group only when other filters force a scan anyway;
        # otherwise two O(log n) probes of the started_at index cost less than MIN/MAX per row.
        per_group_period = bool(f.models or f.tags)
        first = last = None
        if not per_group_period:
            first = con.execute(f"SELECT MIN(started_at) FROM calls{where}", params).fetchone()[0]
            last = con.execute(f"SELECT MAX(started_at) FROM calls{where}", params).fetchone()[0]
        if time_keys:
            if zone is not timezone.utc and per_group_period:
                first, last = con.execute(f"SELECT MIN(started_at), MAX(started_at) FROM calls{where}",
                                          params).fetchone()
            grain_sql, minutes = _grain_sql(zone, first, last)
        key_sql = ([grain_sql] if grain_sql else []) + [_key_sql(k) for k in other]
        agg = AGG_SQL if per_group_period else AGG_SQL.replace("MIN(started_at), MAX(started_at)", "NULL, NULL")
        select = ", ".join(key_sql + [agg])
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(key_sql)))}" if key_sql else ""
        lo, hi = con.execute("SELECT MIN(rowid), MAX(rowid) FROM calls").fetchone()
        n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
        if path is None or lo is None or n_workers <= 1 or (hi - lo) < PARALLEL_MIN_ROWS and workers is None:
            raw = _aggregate(con, f"SELECT {select} FROM calls{where}{group}", params, path)
        else:
            rng = f"{where} AND rowid BETWEEN ? AND ?" if where else " WHERE rowid BETWEEN ? AND ?"
            sql = f"SELECT {select} FROM calls{rng}{group}"
            step = (hi - lo) // n_workers + 1
            chunks = [(lo + i * step, min(hi, lo + (i + 1) * step - 1)) for i in range(n_workers)]
            raw = _aggregate_parallel(path, sql, params, chunks)
    finally:
        if own:
            con.close()
    n = len(key_sql)
    merged: dict[tuple[Any, ...], Group] = {}
    grains: dict[Any, list[str | None]] = {}
    for r in raw:
        if not r[n]:
            continue
        if grain_sql:
            g0 = r[0]
            if g0 not in grains:
                grains[g0] = _time_keys(g0, minutes, zone, time_keys)
            tk = iter(grains[g0])
            ok = iter(r[1:n])
            k = tuple(next(tk) if key in TIME_KEYS else next(ok) for key in keys)
        else:
            k = tuple(r[:n])
        g = Group.from_sql(k, r[n:])
        merged[g.keys] = merged[g.keys] + g if g.keys in merged else g
    rows = list(merged.values())
    total = Group(())
    for g in rows:
        total = total + g
    if not per_group_period and total.calls:
        total = dataclasses.replace(total, first=first, last=last)
    return Report(keys, f, _sort(keys, rows), total, path)


def _aggregate(con: sqlite3.Connection, sql: str, params: Sequence[Any], path: Path | None) -> list[Any]:
    try:
        return con.execute(sql, list(params)).fetchall()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot aggregate ledger {path or ''}: {exc}") from None


def _aggregate_parallel(path: Path, sql: str, params: Sequence[Any], chunks: list[tuple[int, int]]) -> list[Any]:
    out: list[list[Any]] = [[] for _ in chunks]
    errors: list[BaseException] = []

    def work(i: int, a: int, b: int) -> None:
        try:
            c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                out[i] = _aggregate(c, sql, [*params, a, b], path)
            finally:
                c.close()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, a, b), daemon=True) for i, (a, b) in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        err = errors[0]
        raise err if isinstance(err, LedgerError) else LedgerError(f"cannot aggregate ledger {path}: {err}")
    return [r for part in out for r in part]
