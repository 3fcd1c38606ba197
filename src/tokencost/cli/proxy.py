"""``tokencost proxy`` and ``tokencost run -- CMD``: log the spend of apps in any language."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ._common import Format, handle_errors, render_csv, render_json, render_table, usd

DbOpt = Annotated[Optional[str], typer.Option("--db", help="Ledger file (default: $TOKENCOST_DB, else the user data dir).")]
TagOpt = Annotated[
    Optional[list[str]],
    typer.Option("--tag", help="KEY=VALUE tag on every logged call (repeatable); X-Tokencost-Tags overrides per request."),
]
UpstreamOpt = Annotated[
    Optional[str],
    typer.Option("--upstream", help="Where to forward (default: $OPENAI_BASE_URL, else https://api.openai.com/v1)."),
]
AppOpt = Annotated[Optional[str], typer.Option("--app", help="App name stored with each call (reports group by it).")]
StoreOpt = Annotated[bool, typer.Option("--store-content", help="Also store prompt and completion text.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for upstream's next bytes.")]

SUMMARY_KEYS = ("model", "calls", "failed", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_calls")


def _tags(values: list[str] | None) -> dict[str, str]:
    from ..proxy import _TAG_KEY  # the X-Tokencost-Tags rule, so both ways of tagging agree

    out: dict[str, str] = {}
    for value in values or ():
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag expects KEY=VALUE, got {value!r}; e.g. --tag team=search")
        if not _TAG_KEY.fullmatch(key.strip()):
            raise UsageError(f"--tag {value!r}: KEY may hold only letters, digits and _ . : -; e.g. --tag team=search")
        out[key.strip()] = val.strip()
    return out


def _config(upstream: str | None, db: str | None, tag: list[str] | None, app: str | None,
            store_content: bool, timeout: float) -> Any:
    from ..proxy import ProxyConfig, default_upstream

    return ProxyConfig(upstream=upstream or default_upstream(), db=db, tags=_tags(tag), app=app,
                       store_content=store_content, timeout=timeout)


def render_summary(summary: Any, fmt: Format) -> str:
    """The run's spend, per model; JSON keys are SUMMARY_KEYS per model plus ``totals`` and ``db``."""
    rows = [
        [m.model, m.calls, m.failed, m.prompt_tokens, m.completion_tokens,
         None if m.cost_usd is None else str(m.cost_usd), m.unpriced_calls]
        for m in summary.models
    ]
    if fmt is Format.json:
        return render_json({
            "db": str(summary.db) if summary.db else None,
            "models": [dict(zip(SUMMARY_KEYS, r)) for r in rows],
            "totals": {"calls": summary.calls, "prompt_tokens": summary.prompt_tokens,
                       "completion_tokens": summary.completion_tokens, "cost_usd": str(summary.cost_usd)},
            "missing": summary.missing,
        })
    if fmt is Format.csv:
        return render_csv(SUMMARY_KEYS, rows)
    where = f" (ledger: {summary.db})" if summary.db else ""
    if not summary.calls:
        lines = [f"tokencost: no API calls went through the proxy{where}"]
    else:
        head = (f"tokencost: {summary.calls} call{'s' * (summary.calls != 1)}, "
                f"{summary.prompt_tokens + summary.completion_tokens:,} tokens, {usd(summary.cost_usd)}{where}")
        table = render_table(
            ["model", "calls", "failed", "prompt", "completion", "cost"],
            [[m.model, m.calls, m.failed, f"{m.prompt_tokens:,}", f"{m.completion_tokens:,}",
              usd(m.cost_usd) + (f" (+{m.unpriced_calls} unpriced)" if m.unpriced_calls and m.cost_usd is not None else "")]
             for m in summary.models],
            align_right={1, 2, 3, 4, 5},
        )
        lines = [head, table]
    if summary.missing:
        lines.append(f"tokencost: {summary.missing} call(s) are in the spool file beside the ledger, not yet in it")
    if summary.not_recorded:
        lines.append(f"tokencost: {summary.not_recorded} call(s) could not be recorded (see the errors above)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def proxy(
        host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8787,
        upstream: UpstreamOpt = None,
        db: DbOpt = None,
        tag: TagOpt = None,
        app_name: AppOpt = None,
        store_content: StoreOpt = False,
        timeout: TimeoutOpt = 600.0,
    ) -> None:
        """Serve an OpenAI-compatible proxy that logs every call's usage and cost to the ledger.

        Point any client at it: OPENAI_BASE_URL=http://127.0.0.1:8787/v1. Ctrl-C (or SIGTERM) stops
        accepting, lets in-flight calls finish and flushes the ledger.
        """
        from ..runner import ProxyServer

        server = ProxyServer(_config(upstream, db, tag, app_name, store_content, timeout), host=host, port=port)
        server.prepare()
        typer.echo(
            f"tokencost proxy: {server.base_url} -> {server.config.upstream} (ledger: {server.db_path})\n"
            f"  point clients at it: OPENAI_BASE_URL={server.base_url}   stop: Ctrl-C",
            err=True,
        )
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"tokencost proxy: warning: listening on {host}, not loopback — anyone who can reach "
                       "this port can send calls through it and into your ledger", err=True)
        server.serve_forever()

    @app.command(
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )
    @handle_errors
    def run(
        command: Annotated[list[str], typer.Argument(help="The command to run, after --.", show_default=False)],
        upstream: UpstreamOpt = None,
        db: DbOpt = None,
        tag: TagOpt = None,
        app_name: AppOpt = None,
        store_content: StoreOpt = False,
        timeout: TimeoutOpt = 600.0,
        fmt: Annotated[Format, typer.Option("--format", help="Format of the spend summary (on stderr).")] = Format.table,
    ) -> None:
        """Run CMD with OPENAI_BASE_URL pointing at a private proxy; print its spend on exit.

        Example: tokencost run --tag user=alice -- node chatbot.js
        """
        from ..runner import app_name as default_app
        from ..runner import run_command

        config = _config(upstream, db, tag, app_name or default_app(command), store_content, timeout)
        result = run_command(command, config)
        typer.echo(render_summary(result.summary, fmt), err=True)
        raise typer.Exit(code=result.exit_code)
