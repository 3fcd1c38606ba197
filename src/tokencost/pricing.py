"""The dated, sourced price table: which rate applied to which model on which day.

Prices are data, not code: ``pricing/*.csv`` (bundled) plus one optional user file
(``$TOKENCOST_PRICES``, else ``<user config dir>/prices.csv``) with the same columns. Every
amount is a :class:`~decimal.Decimal` parsed from the text of the file, never a float.

Lookup (:func:`price_for`) tries, in order, the first name that has any rows:

1. the exact model name (so a user row for any name, known or not, is honoured);
2. for ``ft:BASE:org::id`` fine-tuned names: ``ft:BASE``, then ``ft:`` + the base's canonical
   name, then ``ft:`` + the alias its snapshot belongs to (``ft:gpt-3.5-turbo``);
3. otherwise the registry's canonical name (``gpt-4-8k`` -> ``gpt-4``), then for a dated snapshot
   with no rows of its own, the alias it belongs to.

Among the rows of that name, a user row in effect on the day wins over a bundled one. A name
with rows, none of them in effect on the day, is :class:`~tokencost.errors.UnpricedModel` (saying
from when it is priced); nothing is ever priced at $0 by default.

Money units: prices are USD per 1M tokens with at most 6 decimal places, so the cost of any
whole number of tokens is a whole number of picodollars (1e-12 USD), the unit the ledger stores.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timezone
from decimal import Decimal

from .errors import InputError, UnknownModel, UnpricedModel, UsageError
from .price_rows import (
    _DATE_SUFFIX, _MISSING_REGISTRY, COLUMNS, Cost, Price, _check_overlaps, _decimal, bundled_dir, from_pico,
    load_price_file, to_pico, user_prices_path,
)

__all__ = [
    "Price",
    "Cost",
    "price_for",
    "price_for_recent",
    "all_prices",
    "list_prices",
    "custom_price",
    "to_pico",
    "from_pico",
    "bundled_dir",
    "user_prices_path",
    "load_price_file",
    "COLUMNS",
]


class _Table:
    def __init__(self, rows: list[Price]) -> None:
        self.rows = rows
        self.by_model: dict[str, list[Price]] = {}
        for p in rows:
            self.by_model.setdefault(p.model, []).append(p)


_bundled_cache: _Table | None = None
_user_cache: dict[tuple[str, int, int], _Table] = {}


def _bundled() -> _Table:
    global _bundled_cache
    if _bundled_cache is None:
        folder = bundled_dir()
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise InputError("no bundled price files (*.csv) found; the installation is incomplete", where=str(folder))
        rows: list[Price] = []
        for f in files:
            rows.extend(load_price_file(f, "bundled"))
        _check_overlaps(rows, str(folder))  # the same model split across two bundled files
        _bundled_cache = _Table(rows)
    return _bundled_cache


def _user() -> _Table:
    path, explicit = user_prices_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        if explicit:
            raise InputError("TOKENCOST_PRICES names a file that does not exist; create it or unset the variable",
                             where=str(path)) from None
        return _Table([])
    # Keyed on mtime and size, so an edited file is re-read and an unchanged one is not.
    key = (str(path), st.st_mtime_ns, st.st_size)
    table = _user_cache.get(key)
    if table is None:
        table = _Table(load_price_file(path, str(path)))
        _user_cache.clear()
        _user_cache[key] = table
    return table


# ---------------------------------------------------------------- lookup


def _day(at: date | datetime | None) -> date:
    if at is None:
        return datetime.now(timezone.utc).date()
    if isinstance(at, datetime):
        # Naive datetimes are taken as UTC, the clock the ledger records in.
        return (at if at.tzinfo is None else at.astimezone(timezone.utc)).date()
    if isinstance(at, date):
        return at
    raise TypeError(f"at must be a date or datetime, got {type(at).__name__}")


def _unknown_without_registry(model: str) -> UnknownModel:
    import difflib

    known = sorted(set(_user().by_model) | set(_bundled().by_model))
    return UnknownModel(model, difflib.get_close_matches(model, known, n=3))


def _registry_names(model: str) -> tuple[list[str], Exception | None]:
    """Canonical name and alias of ``model`` from the model registry, or the registry's error."""
    try:
        from .models import resolve_model
    except ImportError:  # no registry: trim a date suffix, and call a name without rows unknown
        trimmed = _DATE_SUFFIX.sub("", model)
        return ([trimmed] if trimmed != model else []), _MISSING_REGISTRY
    try:
        info = resolve_model(model)
    except UnknownModel as exc:
        return [], exc
    names = [info.name]
    if getattr(info, "snapshot_of", None):
        names.append(info.snapshot_of)  # type: ignore[arg-type]
    return names, None


def _candidates(model: str) -> tuple[list[str], Exception | None]:
    if model.startswith("ft:"):
        base = model.split(":")[1] if model.count(":") >= 1 else ""
        if not base:
            raise UsageError(f"fine-tuned model {model!r} has no base model; expected ft:BASE:org::id")
        names, _ = _registry_names(base)
        trimmed = _DATE_SUFFIX.sub("", base)
        chain = [model, f"ft:{base}"] + [f"ft:{n}" for n in names] + [f"ft:{trimmed}"]
        return list(dict.fromkeys(chain)), None
    names, err = _registry_names(model)
    return list(dict.fromkeys([model] + names)), err


def _rows_for(name: str) -> tuple[list[Price], list[Price]]:
    return _user().by_model.get(name, []), _bundled().by_model.get(name, [])


def _coverage(rows: list[Price]) -> str:
    """The days a name is priced, adjacent rows merged: 'from 2024-05-13' or '2023-03-01..2023-06-12'."""
    spans: list[list[date | None]] = []
    for p in sorted(rows, key=lambda p: p.effective_from):
        last = spans[-1] if spans else None
        if last is not None and (last[1] is None or p.effective_from.toordinal() <= last[1].toordinal() + 1):
            if last[1] is not None and (p.effective_to is None or p.effective_to > last[1]):
                last[1] = p.effective_to
        else:
            spans.append([p.effective_from, p.effective_to])
    return ", ".join(f"from {a}" if b is None else f"{a}..{b}" for a, b in spans)


def _history(model: str) -> tuple[str, list[Price]] | None:
    """The first name in the lookup chain that has rows, with all its rows (user first)."""
    names, err = _candidates(model)
    for name in names:
        user_rows, bundled_rows = _rows_for(name)
        if user_rows or bundled_rows:
            return name, user_rows + bundled_rows
    if err is _MISSING_REGISTRY:
        raise _unknown_without_registry(model)
    if err is not None:
        raise err
    return None


def _no_rows_hint(model: str) -> str:
    if model.startswith("ft:"):
        base = model.split(":")[1]
        return f" (fine-tuned models are priced per base model: add rows for 'ft:{base}')"
    return " (the model is known but has no price row)"


def price_for(model: str, at: date | datetime | None = None) -> Price:
    """The price row in effect for ``model`` on the UTC day of ``at`` (default: today)."""
    if not isinstance(model, str) or not model.strip():
        raise UsageError("model name is empty")
    day = _day(at)
    found = _history(model)
    if found is None:
        raise UnpricedModel(model, day, _no_rows_hint(model))
    name, rows = found
    for p in rows:  # user rows come first, so they win on days they cover
        if p.covers(day):
            return p
    via = f" via {name!r}" if name != model else ""
    raise UnpricedModel(model, day, f"{via} (priced {_coverage(rows)})")


_RECENT: dict[tuple[str, date, str | None, str | None, str | None], tuple[float, Price]] = {}
_RECENT_TTL = 1.0  # seconds


def price_for_recent(model: str, at: date | datetime | None = None) -> Price:
    """:func:`price_for`, remembered for a second per (model, day, prices-file setting).

    For logging calls as they happen: looking a price up means a ``stat`` of the user prices file
    (a system call) and a walk of the lookup chain, on every call. An edited prices file is
    therefore picked up within a second here, and at once by :func:`price_for`. Errors (an
    unpriced model) are not remembered: each one is raised fresh, with its own traceback.
    """
    day = _day(at)
    env = os.environ
    key = (model, day, env.get("TOKENCOST_PRICES"), env.get("XDG_CONFIG_HOME"), env.get("HOME"))
    now = time.monotonic()
    hit = _RECENT.get(key)
    if hit is not None and now - hit[0] < _RECENT_TTL:
        return hit[1]
    price = price_for(model, day)
    if len(_RECENT) > 512:
        _RECENT.clear()
    _RECENT[key] = (now, price)
    return price


def all_prices(at: date | datetime | None = None) -> list[Price]:
    """With ``at=None``: every row, user and bundled, sorted by model and date (the full history).
    With a date: for each model, the one row in effect that day (a user row wins)."""
    user, bundled = _user(), _bundled()
    if at is None:
        rows = user.rows + bundled.rows
        return sorted(rows, key=lambda p: (p.model, p.effective_from, p.origin == "bundled"))
    day = _day(at)
    out: list[Price] = []
    for name in sorted(set(user.by_model) | set(bundled.by_model)):
        for p in user.by_model.get(name, []) + bundled.by_model.get(name, []):
            if p.covers(day):
                out.append(p)
                break
    return out


def list_prices(model: str | None = None, at: date | datetime | None = None) -> list[Price]:
    """What ``tokencost prices`` shows: all rows, the rows in effect on a day, one model's price
    history (through the same lookup chain as :func:`price_for`), or its price on a day."""
    if model is None:
        return all_prices(at)
    if at is not None:
        return [price_for(model, at)]
    found = _history(model)
    if found is None:
        raise UnpricedModel(model, None, _no_rows_hint(model))
    return sorted(found[1], key=lambda p: (p.effective_from, p.origin == "bundled"))


def custom_price(model: str, prompt_per_1m: Decimal | str | int, completion_per_1m: Decimal | str | int) -> Price:
    """A price given on the command line (``--price-in/--price-out``), valid on every day."""
    values = []
    for label, v in (("--price-in", prompt_per_1m), ("--price-out", completion_per_1m)):
        if isinstance(v, float):
            raise TypeError(f"{label}: pass a Decimal or a string, never a float")
        try:
            values.append(_decimal(str(v), label, "command line", optional=False))
        except InputError as exc:
            raise UsageError(str(exc)) from None
    return Price(
        model=model, effective_from=date.min, effective_to=None,
        prompt_per_1m=values[0], completion_per_1m=values[1],  # type: ignore[arg-type]
        cached_prompt_per_1m=None, batch_prompt_per_1m=None, batch_completion_per_1m=None,
        currency="USD", source="--price-in/--price-out", note="given on the command line",
        origin="cli", id=f"{model}@cli",
    )
