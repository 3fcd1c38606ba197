"""Spending budgets kept in the ledger's ``budgets`` table, and the pre-call check.

A budget caps the spend of one period (``day``, ``week`` from Monday, ``month``; all in UTC) on
the calls it covers: its ``models`` (a call matches by requested or reported model; empty = all)
and ``tags`` (every KEY=VALUE must match; empty = all). Its ``action`` decides what the wrapper and
the proxy do when a call would push the spend over the limit: ``warn`` (a :class:`BudgetWarning`)
or ``refuse`` (:class:`tokencost.errors.BudgetExceeded`, raised before the request is sent).

:func:`check_budgets` runs before every tracked call, so it is cheap: budgets are re-read at most
once a second, and each budget's spend is summed once per period and then only over the rows
appended since (``rowid`` above the last one seen), one small indexed query per budget.

JSON contract of :meth:`BudgetStatus.to_json` (``tokencost budget status --format json``: a list)::

    {"name": "daily", "period": "day", "action": "warn" | "refuse",
     "models": ["gpt-4o"], "tags": {"team": "search"},
     "period_start": "2026-11-29T00:00:00Z", "period_end": "2026-11-30T00:00:00Z",
     "limit_usd": "50", "spent_usd": "12.5", "remaining_usd": "37.5",
     "projected_usd": "41.2" (linear projection to period end), "used": "0.2500",
     "unpriced_calls": 0, "exceeded": false}
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time as _time
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import BudgetExceeded, LedgerError, TokencostError, UsageError
from .filters import match_sql

__all__ = [
    "PERIODS",
    "Budget",
    "BudgetStatus",
    "BudgetWarning",
    "has_budgets",
    "budget_status",
    "check_budgets",
    "list_budgets",
    "period_bounds",
    "format_usd",
    "parse_limit",
    "remove_budget",
    "set_budget",
    "unknown_models",
]

PERIODS = ("day", "week", "month")
ACTIONS = ("warn", "refuse")
PICO = Decimal(10) ** 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class BudgetWarning(UserWarning):
    """A call made while a ``warn`` budget is, or is about to be, exceeded."""


def _usd(pico: int) -> Decimal:
    return (Decimal(pico) / PICO).normalize() if pico else Decimal(0)


def _money(pico: int) -> str:
    d = _usd(pico)
    if d == 0 or abs(d) >= Decimal("0.01"):
        return f"${d.quantize(Decimal('0.01')):,}"
    return f"${d:.6f}".rstrip("0")


@dataclass(frozen=True)
class Budget:
    name: str
    limit_pusd: int
    period: str
    models: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    action: str = "warn"
    created_at: str | None = None

    @property
    def limit_usd(self) -> Decimal:
        return _usd(self.limit_pusd)

    def covers(self, model: str | None, tags: Mapping[str, str]) -> bool:
        if self.models and model not in self.models:
            return False
        return all(tags.get(k) == v for k, v in self.tags)

    def scope(self) -> str:
        parts = [f"models {', '.join(self.models)}"] if self.models else []
        parts += [f"{k}={v}" for k, v in self.tags]
        return "; ".join(parts) or "all calls"


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC ``period`` containing ``now``."""
    now = now.astimezone(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise UsageError(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _path_of(ledger: Any) -> Path:
    path = getattr(ledger, "path", ledger)
    return path if isinstance(path, Path) else Path(path)


def _open_path(db: str | Path | None, must_exist: bool = True) -> Path:
    from .spend import ledger_path

    return ledger_path(db, must_exist=must_exist)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(path, timeout=5)
        con.execute("SELECT 1 FROM budgets LIMIT 0")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot use budgets in ledger {path}: {exc}") from None
    return con


def _row_to_budget(r: Sequence[Any]) -> Budget:
    models = tuple(json.loads(r[3] or "[]"))
    tags = tuple(sorted(json.loads(r[4] or "{}").items()))
    return Budget(r[0], int(r[1]), r[2], models, tags, r[5] or "warn", r[6])


_SELECT = "SELECT name, limit_pusd, period, models, tags, action, created_at FROM budgets"


def _load(con: sqlite3.Connection) -> list[Budget]:
    return [_row_to_budget(r) for r in con.execute(_SELECT + " ORDER BY name")]


def list_budgets(db: str | Path | None = None) -> list[Budget]:
    con = _connect(_open_path(db))
    try:
        return _load(con)
    finally:
        con.close()


# The ledger stores limits as SQLite INTEGER (signed 64-bit) picodollars.
MAX_LIMIT_PUSD = 2**63 - 1
MAX_LIMIT_USD = Decimal(MAX_LIMIT_PUSD) / PICO  # exact: $9,223,372.036854775807


def parse_limit(limit: str | Decimal | int) -> int:
    """``--limit`` dollars -> integer picodollars: finite, positive, at most 12 decimal places and
    within what the ledger's 64-bit integer column holds. Anything else is a UsageError."""
    try:
        d = Decimal(str(limit).strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise UsageError(f"bad --limit {limit!r}: give dollars, e.g. --limit 50 or --limit 12.50") from None
    if not d.is_finite() or d <= 0:
        raise UsageError(f"bad --limit {limit!r}: must be a positive amount of USD")
    # Comparisons are exact; check the range before any arithmetic can overflow or round.
    if d > MAX_LIMIT_USD:
        raise UsageError(f"bad --limit {limit!r}: at most ${format(MAX_LIMIT_USD, ',f')} "
                         "(the ledger stores limits as 64-bit integer picodollars)")
    q = d.quantize(Decimal(1).scaleb(-12))  # at most 19 digits here, so no context rounding
    if q != d:
        raise UsageError(f"bad --limit {limit!r}: more than 12 decimal places")
    return int(q.scaleb(12))


def format_usd(d: Decimal) -> str:
    """An exact amount for display, never in exponent form: at least 2 places, more if it has them."""
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp > -2:
        d = d.quantize(Decimal("0.01"))
    s = format(d, ",f")
    return f"-${s[1:]}" if s.startswith("-") else f"${s}"


def unknown_models(models: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The names in ``models`` that no known model matches, each with the closest known names.

    Such a budget is allowed (custom or fine-tuned models the registry does not know), but a typo
    would make it cover nothing, so the CLI warns about these.
    """
    from .errors import UnknownModel
    from .models import resolve_model

    out = []
    for m in dict.fromkeys(models):
        try:
            resolve_model(m)
        except UnknownModel as exc:
            out.append((m, exc.suggestions))
    return out


def set_budget(db: str | Path | None, name: str, *, limit: str | Decimal | int, period: str = "month",
               models: Sequence[str] = (), tags: Sequence[tuple[str, str]] | Mapping[str, str] = (),
               action: str = "warn", now: datetime | None = None) -> Budget:
    """Create or replace budget ``name``. Writes one row in one transaction."""
    if not _NAME.match(name):
        raise UsageError(f"bad budget name {name!r}: use letters, digits, '_', '-', '.', ':' (max 64)")
    if period not in PERIODS:
        raise UsageError(f"bad --period {period!r}; use one of {', '.join(PERIODS)}")
    if action not in ACTIONS:
        raise UsageError(f"bad --action {action!r}; use one of {', '.join(ACTIONS)}")
    tag_pairs = tuple(sorted(dict(tags.items() if isinstance(tags, Mapping) else tags).items()))
    created = _iso(now or datetime.now(timezone.utc))
    b = Budget(name, parse_limit(limit), period, tuple(dict.fromkeys(models)), tag_pairs, action, created)
    path = _open_path(db, must_exist=False)
    con = _connect(path)
    try:
        with con:
            con.execute(
                "INSERT OR REPLACE INTO budgets (name, limit_pusd, period, models, tags, action, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (b.name, b.limit_pusd, b.period, json.dumps(list(b.models)), json.dumps(dict(b.tags)),
                 b.action, b.created_at),
            )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot write budget to ledger {path}: {exc}") from None
    finally:
        con.close()
    _CACHE.clear()
    return b


def remove_budget(db: str | Path | None, name: str) -> None:
    path = _open_path(db)
    con = _connect(path)
    try:
        with con:
            n = con.execute("DELETE FROM budgets WHERE name = ?", (name,)).rowcount
    finally:
        con.close()
    _CACHE.clear()
    if not n:
        raise TokencostError(f"no budget named {name!r} in {path}; `tokencost budget status` lists them")


def _spend_sql(b: Budget, incremental: bool) -> tuple[str, list[Any]]:
    # Incremental: "+started_at" keeps SQLite off the started_at index so it walks the rowid range.
    where = ["calls.rowid > ?", "+started_at >= ?", "+started_at < ?"] if incremental else \
        ["started_at >= ?", "started_at < ?"]
    match, params = match_sql(b.models, b.tags)
    where += match
    # One statement, so the sum and the rowid watermark come from the same snapshot.
    sql = ("SELECT top, COALESCE(SUM(total_cost_pusd), 0),"
           " SUM(total_cost_pusd IS NULL AND COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0) > 0)"
           " FROM (SELECT COALESCE(MAX(rowid), 0) AS top FROM calls) LEFT JOIN calls ON "
           + " AND ".join(where))
    return sql, params


def _spent(con: sqlite3.Connection, b: Budget, start: datetime, end: datetime, after_rowid: int | None = None
           ) -> tuple[int, int, int]:
    """(spent picodollars, unpriced calls, rowid watermark) of ``b`` in [start, end)."""
    sql, params = _spend_sql(b, after_rowid is not None)
    head = [] if after_rowid is None else [after_rowid]
    top, s, unpriced = con.execute(sql, [*head, _iso(start), _iso(end), *params]).fetchone()
    return int(s or 0), int(unpriced or 0), int(top or 0)


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    period_start: datetime
    period_end: datetime
    spent_pusd: int
    projected_pusd: int
    unpriced_calls: int

    @property
    def exceeded(self) -> bool:
        return self.spent_pusd > self.budget.limit_pusd

    def to_json(self) -> dict[str, Any]:
        b = self.budget
        return {
            "name": b.name, "period": b.period, "action": b.action, "models": list(b.models),
            "tags": dict(b.tags),
            "period_start": self.period_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "period_end": self.period_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "limit_usd": format(b.limit_usd, "f"), "spent_usd": format(_usd(self.spent_pusd), "f"),
            "remaining_usd": format(_usd(b.limit_pusd - self.spent_pusd), "f"),
            "projected_usd": format(_usd(self.projected_pusd), "f"),
            "used": format((Decimal(self.spent_pusd) / b.limit_pusd).quantize(Decimal("0.0001")), "f"),
            "unpriced_calls": self.unpriced_calls, "exceeded": self.exceeded,
        }


def budget_status(db: str | Path | None = None, *, now: datetime | None = None) -> list[BudgetStatus]:
    """Spend of every budget in its current period, with a straight-line projection to its end."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    path = _open_path(db)
    con = _connect(path)
    out = []
    try:
        for b in _load(con):
            start, end = period_bounds(b.period, now)
            spent, unpriced, _ = _spent(con, b, start, end)
            elapsed = max((now - start) // timedelta(microseconds=1), 1)
            whole = (end - start) // timedelta(microseconds=1)
            projected = spent * whole // elapsed  # integer picodollars, floor
            out.append(BudgetStatus(b, start, end, spent, projected, unpriced))
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    finally:
        con.close()
    return out


# --------------------------------------------------------------------------- the pre-call hook

_BUDGET_TTL = 1.0  # seconds a budget list is reused; `budget set` elsewhere shows up within it
_CACHE: dict[Any, Any] = {}  # (path, "budgets") -> (loaded_at, budgets); (path, budget, start) -> (rowid, pico)
_LOCK = threading.Lock()
_LOCAL = threading.local()


def _thread_con(path: Path) -> sqlite3.Connection:
    cons = getattr(_LOCAL, "cons", None)
    if cons is None or cons[0] != os.getpid():
        cons = _LOCAL.cons = (os.getpid(), {})
    con = cons[1].get(path)
    if con is None:
        con = cons[1][path] = sqlite3.connect(path, timeout=5, check_same_thread=False)
    return con


def _to_pico_ceiling(d: Decimal | None) -> int:
    if d is None:
        return 0
    return int((Decimal(d) * PICO).to_integral_value(rounding=ROUND_CEILING))


def has_budgets(ledger: Any) -> bool:
    """Whether any budget is defined (cached for a second): lets callers skip pricing an estimate."""
    path = _path_of(ledger)
    hit = _CACHE.get((path, "budgets"))
    if hit is not None and _time.monotonic() - hit[0] < _BUDGET_TTL:
        return bool(hit[1])  # asked on every tracked call: answer without a stat when we can
    return path.exists() and bool(_budgets_cached(path))


def check_budgets(ledger: Any, *, model: str, estimated_cost_usd: Decimal | None,
                  tags: Mapping[str, str], now: datetime | None = None) -> None:
    """Before a call: warn (:class:`BudgetWarning`) or raise :class:`BudgetExceeded` if the spend of
    a budget covering this call, plus the call's estimated cost, would exceed the budget's limit.

    An unpriced call's estimate counts as 0 (a budget already over its limit still refuses it).
    If the ledger cannot be read, the call goes ahead with a warning: a broken ledger must not
    break the application.
    """
    path = _path_of(ledger)
    if not path.exists():  # nothing recorded yet, so no budget either; never create the file here
        return
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    try:
        budgets = _budgets_cached(path)
        if not budgets:
            return
        est = _to_pico_ceiling(estimated_cost_usd)
        con = _thread_con(path)
        hits = []
        for b in budgets:
            if not b.covers(model, tags):
                continue
            start, end = period_bounds(b.period, now)
            spent = _spent_cached(con, path, b, start, end)
            if spent + est > b.limit_pusd:
                hits.append((b, spent, start))
    except sqlite3.Error as exc:
        warnings.warn(f"tokencost: could not check budgets in {path}: {exc}", BudgetWarning, stacklevel=2)
        return
    for b, spent, start in sorted(hits, key=lambda h: h[0].action != "refuse"):
        since = start.strftime("%Y-%m-%d") if b.period != "day" else "today"
        msg = (f"budget {b.name!r} ({_money(b.limit_pusd)} per {b.period}, {b.scope()}) "
               f"{'is already exceeded' if spent > b.limit_pusd else 'would be exceeded'}: "
               f"spent {_money(spent)} since {since} (UTC) + this {model} call's estimated "
               f"{_money(est)}")
        if b.action == "refuse":
            raise BudgetExceeded(
                f"{msg}; call refused before sending. Raise the limit with `tokencost budget set "
                f"{b.name} --limit ...` or remove it with `tokencost budget rm {b.name}`", budget=b.name)
        warnings.warn(msg, BudgetWarning, stacklevel=2)


def _budgets_cached(path: Path) -> list[Budget]:
    key = (path, "budgets")
    hit = _CACHE.get(key)
    t = _time.monotonic()
    if hit is not None and t - hit[0] < _BUDGET_TTL:
        return hit[1]
    con = _thread_con(path)
    try:
        budgets = _load(con)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        budgets = []  # a ledger from before budgets existed has none
    _CACHE[key] = (t, budgets)
    return budgets


def _spent_cached(con: sqlite3.Connection, path: Path, b: Budget, start: datetime, end: datetime) -> int:
    # Rows are appended with growing rowids, so the spend since the last check is a rowid range
    # scan. A row that started in an earlier period but was written late is excluded by started_at.
    key = (path, b, start)
    with _LOCK:
        prev = _CACHE.get(key)
        if prev is not None:
            add, _, top = _spent(con, b, start, end, prev[0])
            if top >= prev[0]:
                _CACHE[key] = (top, prev[1] + add)
                return prev[1] + add
        if len(_CACHE) > 512:  # old periods and replaced budgets
            _CACHE.clear()
        total, _, top = _spent(con, b, start, end)
        _CACHE[key] = (top, total)
        return total
