"""Spend reports: ledger aggregates (:mod:`tokencost.spend`, exact, in SQLite) shaped with pandas.

The only module that imports pandas, and only inside the functions that build DataFrames.
Money columns of the frames hold exact ``Decimal`` objects; printing rounds, nothing else does.

Group keys (``--by``): ``model``, ``day``, ``week`` (date of the Monday that starts it), ``month``,
``endpoint``, ``user`` (the ``user`` tag), ``app``, ``tag:KEY``. Time keys use ``tz`` (UTC by
default), with daylight-saving changes handled exactly.

JSON contract of :meth:`Report.to_json` (``tokencost report --format json``)::

    {
      "by": ["day", "model"],            # the group keys, in nesting order
      "since": "2026-11-01T00:00:00Z" | null, "until": ... | null,   # UTC, until exclusive
      "tz": "UTC",
      "period": {"first": "<started_at of first call>", "last": "..."} | null,
      "rows": [ ROW, ... ],              # one object per group
      "totals": ROW-without-group-keys
    }
    ROW = {
      "<group key>": "value" | null,     # e.g. "model": "gpt-4o-2024-08-06", "day": "2026-11-29",
                                         #       "tag:team": "search" (null: call without that tag)
      "calls": int,                      # every logged call, failed ones included
      "failed_calls": int,               # HTTP status >= 400, connection errors, broken streams
      "estimated_calls": int,            # usage estimated by tokencost (stream without usage chunk)
      "prompt_tokens": int, "completion_tokens": int, "cached_tokens": int,
      "prompt_cost_usd": "0.0123" | null, "completion_cost_usd": "..." | null,
      "total_cost_usd": "0.0456" | null, # exact decimal strings of the priced calls; all three
                                         # null when every token of the group is unpriced
      "unpriced_calls": int,             # calls with tokens but no price (cost unknown, never $0)
      "unpriced_tokens": int,            # prompt + completion tokens of those calls
      "share": "0.4123" | null           # fraction of the total priced cost (4 places)
    }

``--format csv`` has the same columns (group keys first, exact decimal strings) and a last row
whose first key is ``TOTAL``; ``table`` and ``markdown`` round money to 6 places for display (more when a non-zero amount
would otherwise show as $0.000000).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import spend as _spend
from .errors import UsageError
# The ledger aggregates, re-exported under the same names: reports is their pandas-shaped face.
from .spend import *  # noqa: F401,F403
from .spend import GROUP_KEYS, TIME_KEYS, Filters, Group, Report, report

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    *_spend.__all__,
    "calibration_frame",
    "csv_rows",
    "display_table",
    "money",
    "render_markdown",
    "report_frame",
    "spend_frame",
    "spend_pivot",
]

# --------------------------------------------------------------------------- pandas shapes

MONEY_COLUMNS = ("prompt_cost_usd", "completion_cost_usd", "total_cost_usd")


def report_frame(rep: Report) -> "pd.DataFrame":
    """One row per group; money columns hold exact ``Decimal`` (object dtype), None = unpriced."""
    import pandas as pd

    rows = rep.row_dicts()
    cols = list(rep.by) + list(Group(()).metrics(0).keys())
    # Built column by column with explicit dtypes: inference would turn None into NaN (pandas 3
    # string columns) and Decimal strings into floats.
    data: dict[str, Any] = {}
    for c in cols:
        vals = [r[c] for r in rows]
        if c in MONEY_COLUMNS:
            data[c] = pd.Series([None if v is None else Decimal(v) for v in vals], dtype=object)
        elif c == "share" or c in rep.by:
            data[c] = pd.Series(vals, dtype=object)
        else:
            data[c] = pd.Series(vals, dtype="int64")
    return pd.DataFrame(data, columns=cols)


def spend_frame(db: str | Path | None = None, *, by: Sequence[str] = ("model",),
                filters: Filters | None = None) -> "pd.DataFrame":
    """Library entry point for notebooks: :func:`report` as a DataFrame."""
    return report_frame(report(db, by=by, filters=filters))


def spend_pivot(rep: Report, *, index: str | None = None, columns: str | None = None) -> "pd.DataFrame":
    """Total cost (exact Decimal) pivoted: ``index`` (a time key) by ``columns`` (a group key).

    Missing cells are Decimal 0 (no priced spend); None (unpriced) cells count as 0 too, since
    the pivot is for pictures of priced spend; the report itself flags unpriced tokens.
    """
    df = report_frame(rep)
    index = index or next((k for k in rep.by if k in TIME_KEYS), None)
    columns = columns or next((k for k in rep.by if k not in TIME_KEYS), None)
    if index is None:
        raise UsageError("a spend pivot needs a time key (day, week or month) in --by")
    df = df.assign(_cost=df["total_cost_usd"].map(lambda d: d if d is not None else Decimal(0)))
    df[index] = df[index].fillna("(none)")
    if columns is None:
        out = df.groupby(index, sort=True)["_cost"].agg(lambda s: sum(s, Decimal(0))).to_frame("total")
        return out
    df[columns] = df[columns].fillna("(none)")
    out = df.pivot_table(index=index, columns=columns, values="_cost",
                         aggfunc=lambda s: sum(s, Decimal(0)), fill_value=Decimal(0))
    order = df.groupby(columns)["_cost"].agg(lambda s: sum(s, Decimal(0))).sort_values(ascending=False)
    return out[list(order.index)]


def calibration_frame(db: str | Path | None = None, *, filters: Filters | None = None) -> "pd.DataFrame":
    """:func:`tokencost.calibrate.calibrate` as a DataFrame (rates and means as exact Decimals)."""
    import pandas as pd

    from .calibrate import calibrate

    cols = ["model", "endpoint", "calls", "exact", "exact_rate", "mean_diff", "mean_abs_diff", "max_abs_diff"]
    rows = [{c: getattr(r, c) for c in cols} for r in calibrate(db, filters=filters)]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- text formats

HEADERS = ("calls", "failed", "est.", "prompt tok", "completion tok", "cached tok",
           "prompt $", "completion $", "total $", "share")
CSV_COLUMNS = ("calls", "failed_calls", "estimated_calls", "prompt_tokens", "completion_tokens",
               "cached_tokens", "prompt_cost_usd", "completion_cost_usd", "total_cost_usd",
               "unpriced_calls", "unpriced_tokens", "share")


DISPLAY_PLACES = 6  # a million-token price is quoted to the cent: $0.000001 per token


def money(d: Decimal | None, places: int = DISPLAY_PLACES) -> str:
    """Display only: rounds half-up to ``places`` (as the rest of the CLI); None -> "unpriced".

    A non-zero amount that would round to zero is shown exactly instead: rounding must never
    make real spend look like $0.
    """
    if d is None:
        return "unpriced"
    q = d.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    if q == 0 and d != 0:
        q = d.normalize()
    return f"-${-q:,f}" if q < 0 else f"${q:,f}"


def display_table(rep: Report) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows incl. a TOTAL row, footnotes) for the table and markdown formats."""
    import pandas as pd

    df = report_frame(rep)
    tot = {**{k: None for k in rep.by}, **rep.totals.metrics(rep.totals.total_cost_pusd or 0)}
    if rep.by:
        tot[rep.by[0]] = "TOTAL"
    for c in MONEY_COLUMNS:
        tot[c] = None if tot[c] is None else Decimal(tot[c])
    df = pd.concat([df.astype(object), pd.DataFrame([tot], columns=df.columns, dtype=object)], ignore_index=True)

    def cost(col: str) -> "pd.Series":
        def one(r: Any) -> str:
            v = r[col]
            if col == "total_cost_usd" and r["unpriced_tokens"]:
                return "unpriced" if v is None else f"{money(v)} + unpriced"
            return money(v)
        return df.apply(one, axis=1)

    out = pd.DataFrame({k: df[k].map(lambda v: "(none)" if v is None else str(v)) for k in rep.by},
                       index=df.index, dtype=object)
    if rep.by:
        out.loc[out.index[-1], rep.by[0]] = "TOTAL"
        for k in rep.by[1:]:
            out.loc[out.index[-1], k] = ""
    else:
        out["group"] = ["all"] * (len(df) - 1) + ["TOTAL"]
    out["calls"] = df["calls"].map(lambda n: f"{int(n):,}")
    out["failed"] = df["failed_calls"].map(lambda n: f"{int(n):,}" if n else "")
    out["est."] = df["estimated_calls"].map(lambda n: f"{int(n):,}*" if n else "")
    for src, dst in (("prompt_tokens", "prompt tok"), ("completion_tokens", "completion tok"),
                     ("cached_tokens", "cached tok")):
        out[dst] = df[src].map(lambda n: f"{int(n):,}")
    out["prompt $"] = cost("prompt_cost_usd")
    out["completion $"] = cost("completion_cost_usd")
    out["total $"] = cost("total_cost_usd")
    out["share"] = df["share"].map(lambda s: "" if s is None else f"{Decimal(s) * 100:.1f}%")
    headers = list(out.columns)
    notes = []
    t = rep.totals
    if t.first:
        notes.append(f"Period: {t.first[:19]}Z to {t.last[:19]}Z; days in {rep.filters.tz}.")
    if t.failed_calls:
        notes.append(f"failed: {t.failed_calls:,} calls got an error or no answer (counted in calls).")
    if t.estimated_calls:
        notes.append(f"est.*: {t.estimated_calls:,} calls with usage estimated by tokencost "
                     "(the API reported none, e.g. a stream without a usage chunk).")
    if t.unpriced_tokens:
        notes.append(f"unpriced: {t.unpriced_tokens:,} tokens in {t.unpriced_calls:,} calls have no price "
                     "row, so their cost is unknown (not $0); `tokencost prices --help` adds prices.")
    return headers, out.astype(str).values.tolist(), notes


def csv_rows(rep: Report) -> tuple[list[str], list[list[Any]]]:
    """Exact values (decimal strings, no rounding), one row per group plus a TOTAL row."""
    headers = list(rep.by) + list(CSV_COLUMNS)
    rows = [[r.get(c) for c in headers] for r in rep.row_dicts()]
    tot = rep.totals.metrics(rep.totals.total_cost_pusd or 0)
    last = ["TOTAL" if i == 0 else "" for i in range(len(rep.by))] + [tot[c] for c in CSV_COLUMNS]
    return headers, rows + [last]


def render_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    right = [i for i, h in enumerate(headers) if h not in GROUP_KEYS and not h.startswith("tag:")
             and h != "group"]
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
