"""``tokencost report``, ``budget set|status|rm``, ``calibrate`` and ``reconcile``.

Each command parses its options, calls one library function (reports, budgets, calibrate,
reconcile — imported lazily, since reports pulls in pandas) and renders the result.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from ._common import Format, echo, handle_errors, render_csv, render_json, render_table


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class Period(str, Enum):
    day = "day"
    week = "week"
    month = "month"


class Action(str, Enum):
    warn = "warn"
    refuse = "refuse"


DbOpt = Annotated[Optional[str], typer.Option("--db", help="Ledger file (default: $TOKENCOST_DB or the user data dir).")]
SinceOpt = Annotated[Optional[str], typer.Option("--since", help="From this day (YYYY-MM-DD), date-time, or span ago (7d, 12h, 2w).")]
UntilOpt = Annotated[Optional[str], typer.Option("--until", help="Up to and including this day (YYYY-MM-DD), or before this date-time.")]
ModelOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Only calls to this model (requested or reported); repeatable.")]
TagOpt = Annotated[Optional[list[str]], typer.Option("--tag", help="Only calls tagged KEY=VALUE; repeatable (all must match).")]
BudgetModelOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Cover only calls to this model (as requested, or as reported); repeatable. Default: all models.")]
BudgetTagOpt = Annotated[Optional[list[str]], typer.Option("--tag", help="Cover only calls tagged KEY=VALUE; repeatable (all must match). Default: all calls.")]
TzOpt = Annotated[str, typer.Option("--tz", help="Time zone for day/week/month and dates (IANA name).")]


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _render(fmt: Any, headers: list[str], rows: list[list[Any]], text_columns: int = 1) -> str:
    """Table or markdown; the first ``text_columns`` are left-aligned, the numbers right-aligned."""
    from ..reports import render_markdown

    if fmt == ReportFormat.markdown:
        return render_markdown(headers, rows)
    if fmt in (ReportFormat.csv, Format.csv):
        return render_csv(headers, rows)
    return render_table(headers, rows, align_right=set(range(text_columns, len(headers))))


def register(app: typer.Typer) -> None:
    @app.command("report")
    @handle_errors
    def report_cmd(
        by: Annotated[Optional[list[str]], typer.Option("--by", help="Group by model, day, week, month, endpoint, user (the 'user' tag), app or tag:KEY; repeat to nest, e.g. --by day --by model.")] = None,
        since: SinceOpt = None,
        until: UntilOpt = None,
        model: ModelOpt = None,
        tag: TagOpt = None,
        tz: TzOpt = "UTC",
        plot: Annotated[Optional[str], typer.Option("--plot", help="Also write a PNG of spend over time, stacked by the first non-time --by key.")] = None,
        fmt: Annotated[ReportFormat, typer.Option("--format", help="Output format.")] = ReportFormat.table,
        db: DbOpt = None,
    ) -> None:
        """Where the money went: calls, tokens and exact cost, grouped and totalled."""
        from .. import reports

        keys = reports.parse_by(by or ["model"])
        filters = reports.build_filters(since=since, until=until, models=model or (), tags=tag or (), tz=tz)
        rep = reports.report(db, by=keys, filters=filters)
        if rep.empty:
            where = " matching these filters" if (since or until or model or tag) else ""
            _err(f"No calls{where} in the ledger {rep.db}; nothing to report.")
        wrote = None
        if plot and not rep.empty:
            # Before any output: a plot that cannot be written fails the command as a whole.
            from ..plots import plot_report, plot_spend

            plottable = sum(k in reports.TIME_KEYS for k in keys) == 1 and len(keys) <= 2
            wrote = plot_report(rep, plot) if plottable else plot_spend(db, plot, by=keys, filters=filters)
        if fmt == ReportFormat.json:
            echo(render_json(rep.to_json()))
        elif fmt == ReportFormat.csv:
            echo(render_csv(*reports.csv_rows(rep)))
        elif not rep.empty:
            headers, rows, notes = reports.display_table(rep)
            echo(_render(fmt, headers, rows, max(len(keys), 1)))
            for n in notes:
                echo(("" if fmt == ReportFormat.table else "\n") + n)
        if wrote is not None:
            _err(f"Wrote {wrote}")

    budget = typer.Typer(help="Spending limits per day, week or month; checked before every tracked call.",
                         no_args_is_help=True)
    app.add_typer(budget, name="budget")

    @budget.command("set")
    @handle_errors
    def budget_set(
        name: Annotated[str, typer.Argument(help="Budget name (letters, digits, _ - . :).")],
        limit: Annotated[str, typer.Option("--limit", help="Limit in USD per period, e.g. 50 or 12.50.")],
        period: Annotated[Period, typer.Option("--period", help="Period the limit applies to (UTC).")] = Period.month,
        model: BudgetModelOpt = None,
        tag: BudgetTagOpt = None,
        action: Annotated[Action, typer.Option("--action", help="warn, or refuse the call before it is sent.")] = Action.warn,
        db: DbOpt = None,
    ) -> None:
        """Create or replace a budget."""
        from ..budgets import format_usd, set_budget, unknown_models
        from ..reports import parse_tags

        b = set_budget(db, name, limit=limit, period=period.value, models=model or (),
                       tags=parse_tags(tag or ()), action=action.value)
        for m, close in unknown_models(b.models):
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            _err(f"Warning: no known model matches {m!r}{hint}; budget {b.name!r} covers only calls "
                 f"to a model named exactly {m!r}.")
        echo(f"Budget {b.name!r}: {format_usd(b.limit_usd)} per {b.period} for {b.scope()}, action {b.action}.")

    @budget.command("status")
    @handle_errors
    def budget_status_cmd(
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
        db: DbOpt = None,
    ) -> None:
        """Spend, limit and projection of every budget; exit code 1 if any is exceeded."""
        from decimal import Decimal

        from ..budgets import budget_status
        from ..reports import money

        st = budget_status(db)
        if fmt == Format.json:
            echo(render_json([s.to_json() for s in st]))
        elif fmt == Format.csv:  # exact values, like the JSON
            cols = ["name", "period", "action", "models", "tags", "period_start", "period_end", "limit_usd",
                    "spent_usd", "remaining_usd", "projected_usd", "used", "unpriced_calls", "exceeded"]
            flat = []
            for s in st:
                j = s.to_json()
                j["models"] = ";".join(j["models"])
                j["tags"] = ";".join(f"{k}={v}" for k, v in j["tags"].items())
                j["exceeded"] = str(j["exceeded"]).lower()
                flat.append([j[c] for c in cols])
            echo(render_csv(cols, flat))
        elif not st:
            _err("No budgets; set one with `tokencost budget set NAME --limit 50 --period month`.")
        else:
            headers = ["budget", "period", "covers", "action", "spent", "limit", "used", "projected",
                       "unpriced calls", "status"]
            rows = []
            for s in st:
                j = s.to_json()
                state = ("EXCEEDED" if s.exceeded else
                         "on track to exceed" if s.projected_pusd > s.budget.limit_pusd else "ok")
                # 6 places (more if needed), as in `report`: a spend that is a few percent of a
                # small limit must not print as $0.00.
                rows.append([s.budget.name, f"{s.budget.period} from {j['period_start'][:10]}", s.budget.scope(),
                             s.budget.action, money(_usd(s.spent_pusd)) + (" + unpriced" if s.unpriced_calls else ""),
                             money(s.budget.limit_usd), f"{Decimal(j['used']) * 100:.1f}%",
                             money(_usd(s.projected_pusd)), f"{s.unpriced_calls:,}", state])
            echo(_render(fmt, headers, rows, 4))
            unpriced = [s for s in st if s.unpriced_calls]
            if unpriced:
                names = ", ".join(f"{s.budget.name!r} ({s.unpriced_calls:,})" for s in unpriced)
                echo(f"unpriced calls: {names} have tokens but no price row, so their cost is not in "
                     "spent (the real spend is higher); `tokencost prices --help` adds prices.")
        if any(s.exceeded for s in st):
            raise typer.Exit(code=1)

    @budget.command("rm")
    @handle_errors
    def budget_rm(name: Annotated[str, typer.Argument(help="Budget to remove.")], db: DbOpt = None) -> None:
        """Remove a budget."""
        from ..budgets import remove_budget

        remove_budget(db, name)
        echo(f"Removed budget {name!r}.")

    @app.command("calibrate")
    @handle_errors
    def calibrate_cmd(
        since: SinceOpt = None,
        until: UntilOpt = None,
        model: ModelOpt = None,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
        db: DbOpt = None,
    ) -> None:
        """Our pre-call prompt-token estimate against the API's number, per model and endpoint."""
        from ..calibrate import calibrate
        from ..reports import build_filters

        rows = calibrate(db, filters=build_filters(since=since, until=until, models=model or ()))
        if fmt == Format.json:
            echo(render_json([r.to_json() for r in rows]))
            return
        if not rows:
            _err("No calls with both our estimate and the API's prompt_tokens in the ledger; "
                 "track some calls with tokencost.track() first.")
            if fmt == Format.table:
                return
        headers = ["model", "endpoint", "calls", "exact", "exact %", "mean diff", "mean |diff|", "max |diff|"]
        table = [[r.model or "(none)", r.endpoint or "(none)", f"{r.calls:,}", f"{r.exact:,}",
                  f"{r.exact_rate * 100:.2f}%", f"{r.mean_diff:+}", str(r.mean_abs_diff), str(r.max_abs_diff)]
                 for r in rows]
        if fmt == Format.csv:
            keys = ["model", "endpoint", "calls", "exact", "exact_rate", "mean_diff", "mean_abs_diff", "max_abs_diff"]
            echo(render_csv(keys, [[r.to_json()[k] for k in keys] for r in rows]))
        else:
            echo(render_table(headers, table))
            echo("diff = API prompt_tokens - our estimate (positive: we counted too few).")

    @app.command("reconcile")
    @handle_errors
    def reconcile_cmd(
        usage_file: Annotated[str, typer.Argument(help="JSON saved from OpenAI's /v1/organization/usage/completions (group_by=model, bucket_width=1d).")],
        gaps_only: Annotated[bool, typer.Option("--gaps-only", help="Show only buckets that do not match.")] = False,
        check: Annotated[bool, typer.Option("--check", help="Exit with code 1 when there is any gap (for cron and CI).")] = False,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
        db: DbOpt = None,
    ) -> None:
        """Compare the provider's daily usage per model with the ledger and show the gaps."""
        from ..reconcile import reconcile

        rec = reconcile(usage_file, db)
        if rec.incomplete:
            _err(f"Warning: {usage_file} ends with a page saying has_more: true; fetch the remaining pages "
                 "(next_page) for a complete comparison.")
        if rec.buckets == 0:
            _err(f"No buckets in {usage_file} (its data list is empty), so there is nothing to compare; "
                 "fetch the usage for a start_time..end_time range that has calls.")
        rows = [r for r in rec.rows if not gaps_only or r.status != "match"]
        if fmt == Format.json:
            doc = rec.to_json()
            doc["rows"] = [r.to_json() for r in rows]
            echo(render_json(doc))
        elif fmt == Format.csv:
            cols = ["input_tokens", "cached_tokens", "output_tokens", "requests"]
            headers = ["day", "model", "status"] + [f"{side}_{c}" for side in ("provider", "ledger") for c in cols]
            out = []
            for r in rows:
                j = r.to_json()
                out.append([j["day"], r.model, r.status]
                           + [(j[side] or {}).get(c) for side in ("provider", "ledger") for c in cols])
            echo(render_csv(headers, out))
        else:
            headers = ["day", "model", "status", "input (api/ledger)", "cached", "output", "requests"]
            out = []
            for r in rows:
                p, l = r.provider, r.ledger

                def pair(attr: str) -> str:
                    a = "-" if p is None else f"{getattr(p, attr):,}"
                    b = "-" if l is None else f"{getattr(l, attr):,}"
                    d = getattr(r.diff, attr)
                    return f"{a} / {b}" + (f" ({d:+,})" if d else "")

                out.append([r.to_json()["day"], r.model, r.status + (f" ({r.estimated_calls} est.)" if r.estimated_calls else ""),
                            pair("input_tokens"), pair("cached_tokens"), pair("output_tokens"), pair("requests")])
            if out:
                echo(render_table(headers, out, align_right=set()))
            s = rec.summary()
            if rec.buckets:
                echo(", ".join(f"{n} {k}" for k, n in s.items()) + " (buckets x models); diff = API - ledger.")
        if check and not rec.in_sync:
            raise typer.Exit(code=1)


def _usd(pico: int):
    from ..reports import usd

    return usd(pico)
