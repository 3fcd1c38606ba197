"""``tokencost prices``: the dated, sourced price table."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ._common import Format, echo, handle_errors, parse_date, render_csv, render_json, render_table

if TYPE_CHECKING:
    from ..pricing import Price

#: The JSON/CSV contract, one object (or CSV row) per price row, in this order:
#:
#: ``id``                 stable row id, ``"<model>@<effective_from>"`` (``"<model>@cli"`` for --price-in)
#: ``model``              the name the row prices (an alias, a dated snapshot, or ``ft:BASE``)
#: ``effective_from``     first day the row applies, ``YYYY-MM-DD``
#: ``effective_to``       last day it applies (inclusive), or ``null`` while current
#: ``currency``           always ``"USD"``
#: ``prompt_per_1k``      USD per 1K prompt tokens, decimal string
#: ``completion_per_1k``  USD per 1K completion tokens, decimal string
#: ``prompt_per_1m``      USD per 1M prompt tokens, decimal string
#: ``completion_per_1m``  USD per 1M completion tokens, decimal string
#: ``cached_prompt_per_1m``    USD per 1M cached prompt tokens, decimal string or ``null``
#: ``batch_prompt_per_1m``     USD per 1M prompt tokens via the Batch API, or ``null``
#: ``batch_completion_per_1m`` USD per 1M completion tokens via the Batch API, or ``null``
#: ``source``             where the price comes from (a URL for bundled rows)
#: ``note``               free text
#: ``origin``             ``"bundled"``, or the path of the user prices file the row came from
JSON_KEYS = (
    "id", "model", "effective_from", "effective_to", "currency",
    "prompt_per_1k", "completion_per_1k", "prompt_per_1m", "completion_per_1m",
    "cached_prompt_per_1m", "batch_prompt_per_1m", "batch_completion_per_1m",
    "source", "note", "origin",
)

TABLE_HEADERS = ("model", "from", "to", "in $/1K", "out $/1K", "in $/1M", "out $/1M",
                 "cached $/1M", "batch in/out $/1M", "source")


def _dec(d: Decimal | None) -> str | None:
    """A plain decimal string, no exponent and no trailing zeros: Decimal('30.00') -> '30'."""
    if d is None:
        return None
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def price_record(p: "Price") -> dict[str, Any]:
    """One price row as the documented JSON object (keys in :data:`JSON_KEYS` order)."""
    return {
        "id": p.id,
        "model": p.model,
        "effective_from": p.effective_from.isoformat(),
        "effective_to": p.effective_to.isoformat() if p.effective_to else None,
        "currency": p.currency,
        "prompt_per_1k": _dec(p.prompt_per_1k),
        "completion_per_1k": _dec(p.completion_per_1k),
        "prompt_per_1m": _dec(p.prompt_per_1m),
        "completion_per_1m": _dec(p.completion_per_1m),
        "cached_prompt_per_1m": _dec(p.cached_prompt_per_1m),
        "batch_prompt_per_1m": _dec(p.batch_prompt_per_1m),
        "batch_completion_per_1m": _dec(p.batch_completion_per_1m),
        "source": p.source,
        "note": p.note,
        "origin": p.origin,
    }


def _table_row(p: "Price") -> list[str]:
    batch = (f"{_dec(p.batch_prompt_per_1m)}/{_dec(p.batch_completion_per_1m)}"
             if p.batch_prompt_per_1m is not None and p.batch_completion_per_1m is not None else "")
    source = p.source if p.origin == "bundled" else f"{p.source} [{p.origin}]"
    return [p.model, p.effective_from.isoformat(), p.effective_to.isoformat() if p.effective_to else "current",
            _dec(p.prompt_per_1k) or "", _dec(p.completion_per_1k) or "",
            _dec(p.prompt_per_1m) or "", _dec(p.completion_per_1m) or "",
            _dec(p.cached_prompt_per_1m) or "", batch, source]


def register(app: typer.Typer) -> None:
    @app.command("prices")
    @handle_errors
    def prices(
        model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only this model (aliases, snapshots and ft: names resolve as when pricing).")] = None,
        at: Annotated[Optional[str], typer.Option("--at", help="Only the rows in effect on this day (YYYY-MM-DD).")] = None,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    ) -> None:
        """List the dated, sourced price table (USD per 1K and per 1M tokens).

        Without options, every row, past and current; --at shows the rows in effect that day.
        Add or override prices (negotiated, Azure, fine-tuned) in a CSV with the same columns as
        pricing/openai.csv at $TOKENCOST_PRICES or <user config dir>/prices.csv: your rows win.
        """
        from ..pricing import list_prices

        day = parse_date(at, "--at")
        rows = list_prices(model, day)
        if fmt is Format.json:
            echo(render_json([price_record(p) for p in rows]))
        elif fmt is Format.csv:
            echo(render_csv(JSON_KEYS, [[price_record(p)[k] for k in JSON_KEYS] for p in rows]))
        else:
            echo(render_table(TABLE_HEADERS, [_table_row(p) for p in rows], align_right={3, 4, 5, 6, 7}))
