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

import csv
import io
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Iterable

from .errors import InputError, UnknownModel, UnpricedModel, UsageError

__all__ = [
    "Price",
    "Cost",
    "price_for",
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

COLUMNS = (
    "model",
    "effective_from",
    "effective_to",
    "prompt_per_1m",
    "completion_per_1m",
    "cached_prompt_per_1m",
    "batch_prompt_per_1m",
    "batch_completion_per_1m",
    "currency",
    "source",
    "note",
)
_REQUIRED = ("model", "effective_from", "prompt_per_1m", "completion_per_1m", "source")
_MAX_PLACES = 6  # per-1M prices with <= 6 decimals keep every token cost a whole picodollar
_MILLION = Decimal(1_000_000)
_PICO = Decimal(10) ** 12
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_MISSING_REGISTRY = LookupError("no model registry")  # marker: build the UnknownModel only when needed


@dataclass(frozen=True)
class Cost:
    """USD amounts, unrounded. ``prompt`` includes the cached part of the prompt."""

    prompt: Decimal
    completion: Decimal
    total: Decimal


@dataclass(frozen=True)
class Price:
    model: str
    effective_from: date
    effective_to: date | None  # last day the row applies (inclusive); None = still current
    prompt_per_1m: Decimal
    completion_per_1m: Decimal
    cached_prompt_per_1m: Decimal | None
    batch_prompt_per_1m: Decimal | None
    batch_completion_per_1m: Decimal | None
    currency: str
    source: str
    note: str
    origin: str  # "bundled" | path of the user file | "cli"
    id: str
    line: int = field(default=0, compare=False, repr=False)  # line in its file, for error messages

    @property
    def prompt_per_1k(self) -> Decimal:
        return self.prompt_per_1m / 1000

    @property
    def completion_per_1k(self) -> Decimal:
        return self.completion_per_1m / 1000

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    def cost(self, prompt_tokens: int, completion_tokens: int = 0, cached_tokens: int = 0, *, batch: bool = False) -> Cost:
        """Exact cost. ``cached_tokens`` is the part of ``prompt_tokens`` the API reported as cached.

        Cached tokens are billed at the cached rate when the row has one, else at the prompt rate
        (the model gives no discount). With ``batch=True`` the batch rates apply and cached tokens
        are billed at the batch prompt rate: no published rule we could source says the two
        discounts stack, so we never bill less than we can justify.
        """
        for name, n in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens),
                        ("cached_tokens", cached_tokens)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(f"{name} must be a whole number of tokens, 0 or more (got {n!r})")
        if cached_tokens > prompt_tokens:
            raise UsageError(f"cached_tokens ({cached_tokens}) cannot exceed prompt_tokens ({prompt_tokens})")
        if batch:
            if self.batch_prompt_per_1m is None or self.batch_completion_per_1m is None:
                raise UnpricedModel(self.model, None, f" (no batch price in row {self.id})")
            in_rate, out_rate, cached_rate = self.batch_prompt_per_1m, self.batch_completion_per_1m, self.batch_prompt_per_1m
        else:
            in_rate, out_rate = self.prompt_per_1m, self.completion_per_1m
            cached_rate = self.cached_prompt_per_1m if self.cached_prompt_per_1m is not None else in_rate
        with localcontext() as ctx:
            ctx.prec = 60  # far beyond any real token count x price: products stay exact
            prompt = ((prompt_tokens - cached_tokens) * in_rate + cached_tokens * cached_rate) / _MILLION
            completion = completion_tokens * out_rate / _MILLION
            total = prompt + completion
        return Cost(prompt=prompt, completion=completion, total=total)


# ---------------------------------------------------------------- money units


def to_pico(d: Decimal) -> int:
    """USD -> integer picodollars, exactly. A value that is not a whole number of picodollars is a
    ``ValueError`` rather than a silent rounding: storage never rounds (costs from valid price rows
    always convert)."""
    if not isinstance(d, Decimal):
        raise TypeError(f"to_pico needs a Decimal, got {type(d).__name__}")
    if not d.is_finite():
        raise ValueError(f"cannot store {d} as picodollars")
    with localcontext() as ctx:
        ctx.prec = 60
        scaled = d * _PICO
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{d} USD is not a whole number of picodollars (1e-12 USD)")
    return int(scaled)


def from_pico(n: int) -> Decimal:
    """Integer picodollars -> USD Decimal, exactly."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"from_pico needs an int, got {type(n).__name__}")
    return Decimal(n).scaleb(-12)


# ---------------------------------------------------------------- loading


def bundled_dir() -> Path:
    """Where the bundled CSVs live: inside the package in a wheel, the repo's ``pricing/`` otherwise."""
    here = Path(__file__).resolve()
    packaged = here.parent / "pricing"
    if packaged.is_dir():
        return packaged
    return here.parents[2] / "pricing"


def user_prices_path() -> tuple[Path, bool]:
    """The user prices file and whether it was named explicitly (``$TOKENCOST_PRICES``)."""
    env = os.environ.get("TOKENCOST_PRICES")
    if env:
        return Path(env).expanduser(), True
    import platformdirs  # lazy: only needed when no override is given

    return Path(platformdirs.user_config_dir("tokencost")) / "prices.csv", False


def _decimal(text: str, column: str, where: str, *, optional: bool) -> Decimal | None:
    text = text.strip()
    if not text:
        if optional:
            return None
        raise InputError(f"{column} is empty; give USD per 1M tokens, e.g. 2.50", where=where)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{column} {text!r} is not a number; give USD per 1M tokens, e.g. 2.50", where=where) from None
    if not value.is_finite():
        raise InputError(f"{column} {text!r} is not a finite number", where=where)
    if value < 0:
        raise InputError(f"{column} {text!r} is negative; prices are 0 or more", where=where)
    if -value.normalize().as_tuple().exponent > _MAX_PLACES:  # type: ignore[operator]  # 2.500000000 is fine
        raise InputError(
            f"{column} {text!r} has more than {_MAX_PLACES} decimal places (USD per 1M tokens); "
            "round it so every token costs a whole number of picodollars", where=where)
    return value


def _date(text: str, column: str, where: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{column} {text.strip()!r} is not a date; use YYYY-MM-DD, e.g. 2024-05-13", where=where) from None


def load_price_file(path: Path, origin: str) -> list[Price]:
    """Parse and validate one price CSV. Any problem is an InputError naming ``path:line``."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("prices file not found; create it (columns: " + ",".join(COLUMNS) + ") or unset TOKENCOST_PRICES",
                         where=name) from None
    except UnicodeDecodeError:
        raise InputError("prices file is not UTF-8 text", where=name) from None
    except OSError as exc:
        raise InputError(f"cannot read prices file: {exc.strerror or exc}", where=name) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[Price] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"not valid CSV: {exc}", where=f"{name}:{reader.line_num}") from None
        line = reader.line_num
        where = f"{name}:{line}"
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            unknown = [c for c in header if c not in COLUMNS]
            if unknown:
                raise InputError(f"unknown column {unknown[0]!r}; expected columns: {', '.join(COLUMNS)}", where=where)
            missing = [c for c in _REQUIRED if c not in header]
            if missing:
                raise InputError(f"missing column {missing[0]!r}; required: {', '.join(_REQUIRED)}", where=where)
            if len(set(header)) != len(header):
                raise InputError("a column is named twice in the header", where=where)
            continue
        if len(cells) != len(header):
            raise InputError(f"expected {len(header)} fields, found {len(cells)} (quote fields that contain commas)",
                             where=where)
        rec = dict(zip(header, cells))
        get = lambda col: rec.get(col, "").strip()  # noqa: E731
        model = get("model")
        if not model or any(ch.isspace() for ch in model):
            raise InputError(f"model {model!r} must be a name without spaces, e.g. gpt-4o", where=where)
        start = _date(get("effective_from"), "effective_from", where)
        end = _date(get("effective_to"), "effective_to", where) if get("effective_to") else None
        if end is not None and end < start:
            raise InputError(f"effective_to {end} is before effective_from {start}", where=where)
        currency = get("currency") or "USD"
        if currency != "USD":
            raise InputError(f"currency {currency!r} is not supported; convert the prices to USD", where=where)
        source = get("source")
        if not source:
            raise InputError("source is empty; every price names where it comes from (a URL, or e.g. 'contract 2025')",
                             where=where)
        rows.append(Price(
            model=model, effective_from=start, effective_to=end,
            prompt_per_1m=_decimal(get("prompt_per_1m"), "prompt_per_1m", where, optional=False),  # type: ignore[arg-type]
            completion_per_1m=_decimal(get("completion_per_1m"), "completion_per_1m", where, optional=False),  # type: ignore[arg-type]
            cached_prompt_per_1m=_decimal(get("cached_prompt_per_1m"), "cached_prompt_per_1m", where, optional=True),
            batch_prompt_per_1m=_decimal(get("batch_prompt_per_1m"), "batch_prompt_per_1m", where, optional=True),
            batch_completion_per_1m=_decimal(get("batch_completion_per_1m"), "batch_completion_per_1m", where, optional=True),
            currency=currency, source=source, note=get("note"), origin=origin,
            id=f"{model}@{start.isoformat()}", line=line,
        ))
    _check_overlaps(rows, name)
    return rows


def _check_overlaps(rows: Iterable[Price], name: str) -> None:
    by_model: dict[str, list[Price]] = {}
    for p in rows:
        by_model.setdefault(p.model, []).append(p)
    for model, prices in by_model.items():
        prices.sort(key=lambda p: p.effective_from)
        for prev, cur in zip(prices, prices[1:]):
            if prev.effective_to is None or cur.effective_from <= prev.effective_to:
                span = lambda p: f"{p.effective_from}..{p.effective_to or 'open-ended'}"  # noqa: E731
                first, second = sorted((prev, cur), key=lambda p: p.line)
                raise InputError(
                    f"rows for {model!r} overlap: {span(second)} here and {span(first)} on line {first.line}; "
                    f"end the earlier period with effective_to (the day before {cur.effective_from})",
                    where=f"{name}:{second.line}")


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


def _clear_caches() -> None:
    """For tests and long-running processes that edit the bundled data."""
    global _bundled_cache
    _bundled_cache = None
    _user_cache.clear()
