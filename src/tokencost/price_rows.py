"""Price rows and the files they come from: the :class:`Price` type, money units, and reading and
validating a price CSV (``pricing/*.csv`` bundled, or a user file with the same columns).

Every amount is a :class:`~decimal.Decimal` parsed from the text of the file, never a float.
Money units: prices are USD per 1M tokens with at most 6 decimal places, so the cost of any
whole number of tokens is a whole number of picodollars (1e-12 USD), the unit the ledger stores.
Lookup by model and day lives in :mod:`tokencost.pricing`.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Iterable

from .errors import InputError, UnpricedModel, UsageError

__all__ = ["Price", "Cost", "to_pico", "from_pico", "bundled_dir", "user_prices_path", "load_price_file", "COLUMNS"]

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
        _check_counts(prompt_tokens, completion_tokens, cached_tokens)
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

    def cost_pico(self, prompt_tokens: int, completion_tokens: int = 0, cached_tokens: int = 0) -> tuple[int, int, int]:
        """:meth:`cost` (not batch) as integer picodollars ``(prompt, completion, total)``: the same
        amounts, in whole-number arithmetic (rates have at most 6 places, so a token costs a whole
        number of picodollars). The wrapper prices every call with this."""
        rates = self.__dict__.get("_pico_rates")
        if rates is None:
            cached = self.cached_prompt_per_1m if self.cached_prompt_per_1m is not None else self.prompt_per_1m
            rates = tuple(_pico_per_token(r) for r in (self.prompt_per_1m, self.completion_per_1m, cached))
            self.__dict__["_pico_rates"] = rates  # frozen: bypass __setattr__; not a field, so eq/hash ignore it
        _check_counts(prompt_tokens, completion_tokens, cached_tokens)
        prompt = (prompt_tokens - cached_tokens) * rates[0] + cached_tokens * rates[2]
        completion = completion_tokens * rates[1]
        return prompt, completion, prompt + completion


def _check_counts(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> None:
    for name, n in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens),
                    ("cached_tokens", cached_tokens)):
        if type(n) is not int or n < 0:  # the common case, plain ints, decided by one test
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise UsageError(f"{name} must be a whole number of tokens, 0 or more (got {n!r})")
    if cached_tokens > prompt_tokens:
        raise UsageError(f"cached_tokens ({cached_tokens}) cannot exceed prompt_tokens ({prompt_tokens})")


def _pico_per_token(per_1m: Decimal) -> int:
    # USD per 1M tokens -> picodollars per token: x 1e12 / 1e6, in exact integers (Decimal
    # arithmetic would round to the calling thread's context, which the application may have set).
    num, den = per_1m.as_integer_ratio()
    pico, rest = divmod(num * 10**6, den)
    if rest:
        raise ValueError(f"{per_1m} USD per 1M tokens has more than {_MAX_PLACES} decimal places")
    return pico


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
    return _default_user_prices(os.environ.get("XDG_CONFIG_HOME"), os.environ.get("HOME")), False


@functools.lru_cache(maxsize=8)
def _default_user_prices(xdg_config_home: str | None, home: str | None) -> Path:
    # Every priced call looks the file up: platformdirs costs ~50 us a time, so remember its answer
    # for as long as the variables it reads stay the same.
    import platformdirs  # lazy: only needed when no override is given

    return Path(platformdirs.user_config_dir("tokencost")) / "prices.csv"


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
