"""Pictures of spend: stacked spend over time (matplotlib, Agg backend, imported lazily).

The numbers come from :func:`tokencost.reports.spend_pivot` (exact Decimals); they become floats
only here, at the last step, because a bar's height on screen is not money.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from .errors import TokencostError, UsageError
from .reports import money, spend_pivot
from .spend import TIME_KEYS, Filters, Report, report

__all__ = ["plot_report", "plot_spend", "plot_title"]

MAX_SERIES = 9  # more stacked colours than this is unreadable; the rest becomes "other"


def plot_spend(db: str | Path | None, out: str | Path, *, by: Sequence[str] = ("day",),
               filters: Filters | None = None) -> Path:
    """Aggregate the ledger for a plot and write it: time key from ``by`` (default day), stacked
    by the first non-time key of ``by``."""
    time_key = next((k for k in by if k in TIME_KEYS), "day")
    stack = next((k for k in by if k not in TIME_KEYS), None)
    keys = (time_key,) + ((stack,) if stack else ())
    return plot_report(report(db, by=keys, filters=filters), out)


def plot_report(rep: Report, out: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    time_key = next((k for k in rep.by if k in TIME_KEYS), None)
    stack = next((k for k in rep.by if k not in TIME_KEYS), None)
    pivot = spend_pivot(rep, index=time_key, columns=stack)
    pivot = pivot[[c for c in pivot.columns if sum(pivot[c], Decimal(0)) != 0] or list(pivot.columns[:1])]
    if pivot.shape[1] > MAX_SERIES:
        keep = list(pivot.columns[: MAX_SERIES - 1])
        rest = pivot[[c for c in pivot.columns if c not in keep]]
        pivot = pivot[keep].assign(other=rest.apply(lambda r: sum(r, Decimal(0)), axis=1))
    data = pivot.apply(lambda col: col.map(float))

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    labels = [str(i) for i in data.index]
    bottom = [0.0] * len(labels)
    cmap = plt.get_cmap("tab10")
    for i, col in enumerate(data.columns):
        vals = list(data[col])
        ax.bar(labels, vals, bottom=bottom, label=str(col), color=cmap(i % 10), width=0.8)
        bottom = [b + v for b, v in zip(bottom, vals)]

    top = max(bottom, default=0.0)
    fmt = "${x:,.2f}" if top >= 1 else "${x:,.4f}"
    ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt.format(x=x)))
    ax.set_ylabel("spend (USD)")
    ax.set_xlabel(f"{time_key} ({rep.filters.tz})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if len(labels) < 5:  # a lone bar should not fill the whole chart
        ax.set_xlim(-2.5, len(labels) + 1.5)
    if len(labels) > 12:
        step = -(-len(labels) // 12)
        ax.set_xticks(range(0, len(labels), step))
        ax.set_xticklabels(labels[::step])
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    if stack:
        ax.legend(title=stack, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))

    title = plot_title(rep, time_key or "day", stack, labels)
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    try:
        return _save(fig, Path(out))
    finally:
        plt.close(fig)


def _save(fig: Any, path: Path) -> Path:
    """Write the figure to a temporary file next to ``path``, then rename it over ``path``: the
    file is either the whole picture or not there (an old one stays as it was)."""
    fmt = path.suffix[1:].lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise UsageError(f"cannot write plot {path}: unknown image type {path.suffix!r}; "
                         f"use one of {', '.join('.' + k for k in sorted(supported))}")
    tmp: str | None = None
    try:
        name = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        # os.open with 0o666 lets the umask decide the mode, as for any file the user writes
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        tmp = name
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        hint = "" if path.parent.is_dir() else f" (no directory {path.parent}; create it first)"
        raise TokencostError(f"cannot write plot {path}: {exc.strerror or exc}{hint}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def plot_title(rep: Report, time_key: str, stack: str | None, labels: list[str]) -> str:
    """"Spend per day by model, 2026-11-20 to 2026-11-26 (UTC) — total $10.86 (+ N unpriced tokens)"."""
    total = rep.totals.total_cost
    first, last = (labels[0], labels[-1]) if labels else ("-", "-")
    title = f"Spend per {time_key}" + (f" by {stack}" if stack else "")
    title += f", {first} to {last} ({rep.filters.tz})"
    if total is not None:
        title += f" — total {money(total, 2 if total >= 1 else 4)}"
    if rep.totals.unpriced_tokens:
        title += f" + {rep.totals.unpriced_tokens:,} unpriced tokens"
    return title
