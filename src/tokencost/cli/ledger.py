"""``tokencost calls`` (recent calls, newest first) and ``tokencost db path``.

JSON keys of ``calls --format json`` (a list, one object per call; the CSV has the same columns):
``id, started_at, endpoint, model_requested, model, prompt_tokens, completion_tokens, cached_tokens,
reasoning_tokens, total_tokens, prompt_cost_usd, completion_cost_usd, total_cost_usd`` (exact
decimal strings, null when unpriced), ``price_id, usage_source, estimated_prompt_tokens, status,
error_type, request_id, streamed`` (bool), ``latency_ms, tags`` (object), ``app, via``.
``status`` is the HTTP status, null when no response came back (timeout, connection error);
``error_type`` is then the exception's class name (``APITimeoutError``, ``APIConnectionError``).

The table shows the same in two columns: ``status`` ("-" when there was no response) and
``error``. Calls still waiting in a spool file (the ledger could not be written) are counted on
stderr, never mixed into the rows.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from ._common import Format, echo, handle_errors, render_csv, render_json, render_table, usd

__all__ = ["register", "JSON_KEYS"]

DbOpt = Annotated[Optional[str], typer.Option("--db", help="Ledger file (default: $TOKENCOST_DB or the user data dir).")]
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="From this date/date-time (UTC), or a span ago: 7d, 12h, 30m, 2w.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Only calls to this model (served or requested).")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=0, help="At most this many calls (0 = all).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]

JSON_KEYS = (
    "id", "started_at", "endpoint", "model_requested", "model", "prompt_tokens", "completion_tokens",
    "cached_tokens", "reasoning_tokens", "total_tokens", "prompt_cost_usd", "completion_cost_usd",
    "total_cost_usd", "price_id", "usage_source", "estimated_prompt_tokens", "status", "error_type",
    "request_id", "streamed", "latency_ms", "tags", "app", "via",
)
TABLE_HEADERS = ("started (UTC)", "endpoint", "model", "prompt", "completion", "cost", "usage", "status", "error",
                 "tags")

db_app = typer.Typer(help="Where the ledger lives.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("calls")(calls)
    app.add_typer(db_app, name="db")


def _usd(pico: Any) -> Any:
    from ..pricing import from_pico

    return None if pico is None else from_pico(int(pico))


def _view(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in JSON_KEYS:
        if key.endswith("_cost_usd"):
            value = _usd(row.get(key.replace("_usd", "_pusd")))
            out[key] = None if value is None else f"{value:f}"  # plain digits, never 0E-12
        elif key == "streamed":
            out[key] = bool(row.get("streamed"))
        elif key == "tags":
            try:
                out[key] = json.loads(row.get("tags") or "{}")
            except ValueError:
                out[key] = {}
        else:
            out[key] = row.get(key)
    return out


def _cost_cell(row: dict[str, Any]) -> str:
    if row.get("total_cost_pusd") is None:
        return "unpriced" if row.get("prompt_tokens") is not None else ""
    return usd(_usd(row["total_cost_pusd"]))


def _status_cell(row: dict[str, Any]) -> str:
    status = row.get("status")
    return "-" if status is None else str(status)  # no HTTP response at all (timeout, refused)


@handle_errors
def calls(db: DbOpt = None, since: SinceOpt = None, model: ModelOpt = None, limit: LimitOpt = 20,
          fmt: FormatOpt = Format.table) -> None:
    """Recent calls in the ledger, newest first."""
    from ..ledger import Ledger, parse_since

    when = parse_since(since) if since is not None else None
    ledger = Ledger(db)
    if not ledger.path.exists():
        ledger.open(must_exist=True)  # raises LedgerError naming the path
    try:
        rows = ledger.calls(since=when, model=model, limit=limit or None)
        waiting = ledger.spooled()  # what the open could not merge (e.g. a read-only ledger)
    finally:
        ledger.close()
    if waiting:
        n = sum(count for _, count in waiting)
        typer.echo(f"Note: {n} more call{'s' if n != 1 else ''} wait in {', '.join(str(p) for p, _ in waiting)} "
                   "(not shown); they are merged into the ledger the next time it opens for writing", err=True)
    if fmt is Format.json:
        echo(render_json([_view(r) for r in rows]))
        return
    if fmt is Format.csv:
        views = [_view(r) for r in rows]
        echo(render_csv(JSON_KEYS, [[json.dumps(v[k], sort_keys=True) if k == "tags" else v[k] for k in JSON_KEYS]
                                    for v in views]))
        return
    if not rows:
        echo(f"No calls in {ledger.path}" + (" matching the filters." if since or model else " yet."))
        return
    table = [
        (
            (r.get("started_at") or "")[:19].replace("T", " "),
            r.get("endpoint") or "",
            r.get("model") or r.get("model_requested") or "",
            "" if r.get("prompt_tokens") is None else f"{r['prompt_tokens']:,}",
            "" if r.get("completion_tokens") is None else f"{r['completion_tokens']:,}",
            _cost_cell(r),
            r.get("usage_source") or "-",
            _status_cell(r),
            r.get("error_type") or "",
            ", ".join(f"{k}={v}" for k, v in sorted(_view(r)["tags"].items())),
        )
        for r in rows
    ]
    echo(render_table(TABLE_HEADERS, table, align_right={3, 4, 5}))


@db_app.command("path")
@handle_errors
def db_path(db: DbOpt = None) -> None:
    """Print the ledger file in use (--db, else $TOKENCOST_DB, else the user data dir)."""
    from ..ledger import Ledger

    echo(str(Ledger(db).path))
