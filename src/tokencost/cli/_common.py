"""What every command shares: error translation, output formats, plain tables."""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

if TYPE_CHECKING:
    from datetime import date
    from decimal import Decimal

import typer

from ..errors import TokencostError, UsageError

F = TypeVar("F", bound=Callable[..., Any])


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``Error: message`` on stderr and return the ``typer.Exit`` to raise."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code=code)


def handle_errors(fn: F) -> F:
    """Turn TokencostError (and a broken stdout pipe) into a one-line error and exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TokencostError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            raise typer.Exit(code=0) from None

    return wrapper  # type: ignore[return-value]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align_right: set[int] | None = None) -> str:
    """A plain, aligned text table. Numeric-looking columns are right-aligned unless told."""
    body = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if align_right is None:
        align_right = {
            i
            for i in range(len(headers))
            if body and all(_numeric(row[i]) for row in body if row[i] != "")
            and any(row[i] != "" for row in body)
        }

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in align_right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(list(headers)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    return "\n".join(out)


def _numeric(s: str) -> bool:
    t = s.replace(",", "").replace("$", "").replace("%", "").replace("x", "").strip()
    try:
        float(t)
        return True
    except ValueError:
        return False


def render_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue().rstrip("\n")


def render_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def echo(text: str) -> None:
    typer.echo(text)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def parse_date(value: str | None, option: str) -> "date | None":
    """``YYYY-MM-DD`` -> date; anything else is a usage error naming the option."""
    if value is None:
        return None
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date; use YYYY-MM-DD, e.g. 2024-05-13") from None


def usd(amount: "Decimal | None", *, places: int = 6) -> str:
    """Printing rounds (half-up), storage never does. ``None`` means unpriced."""
    if amount is None:
        return "unpriced"
    from decimal import ROUND_HALF_UP, Decimal

    q = Decimal(1).scaleb(-places)
    return f"${amount.quantize(q, rounding=ROUND_HALF_UP):,}"
