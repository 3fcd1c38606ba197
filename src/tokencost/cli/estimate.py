"""``tokencost estimate`` and ``tokencost explain``."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ._common import Format, echo, handle_errors, parse_date, render_csv, render_json, render_table, stderr_is_tty, usd


class AsMode(str, Enum):
    request = "request"
    conversation = "conversation"


FileArg = Annotated[str, typer.Argument(metavar="FILE", help="Request body (.json), list of messages, JSONL of request bodies, or - for stdin.")]
AtOpt = Annotated[Optional[str], typer.Option("--at", metavar="DATE", help="Price as of this day (YYYY-MM-DD); default today.")]
PriceIn = Annotated[Optional[str], typer.Option("--price-in", metavar="USD", help="Prompt price in USD per 1M tokens (prices any model).")]
PriceOut = Annotated[Optional[str], typer.Option("--price-out", metavar="USD", help="Completion price in USD per 1M tokens.")]
CompletionOpt = Annotated[
    Optional[int],
    typer.Option("--completion-tokens", min=0, metavar="N", help="Completion tokens to assume (default: max_tokens, else 0)."),
]
AsOpt = Annotated[
    Optional[AsMode],
    typer.Option("--as", help="Read the messages as one request, or as a chatbot conversation (default: guessed)."),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]
ImageSizeOpt = Annotated[
    Optional[list[str]],
    typer.Option("--image-size", metavar="URL=WxH", help="Size of a remote image, URL=WIDTHxHEIGHT (images are never fetched)."),
]


def _image_sizes(values: list[str] | None) -> dict[str, tuple[int, int]] | None:
    if not values:
        return None
    sizes: dict[str, tuple[int, int]] = {}
    for value in values:
        url, sep, size = value.rpartition("=")
        w, x, h = size.lower().partition("x")
        if not (sep and url and x and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            raise UsageError(f"--image-size {value!r}: use URL=WIDTHxHEIGHT, e.g. https://x/cat.png=1024x768")
        sizes[url] = (int(w), int(h))
    return sizes

SUMMARY_KEYS = (
    "source", "model", "mode", "prompt_tokens", "completion_tokens", "completion_is_upper_bound",
    "prompt_cost_usd", "completion_cost_usd", "total_cost_usd", "exact", "context_window", "fits",
    "first_overflow_turn", "price_id", "price_source",
)


_MAX_PRICE = Decimal(1_000_000)  # USD per 1M tokens: far above any real model, far below overflow


def _custom_price(model: str | None, price_in: str | None, price_out: str | None):
    if price_in is None and price_out is None:
        return None
    if price_in is None or price_out is None:
        raise UsageError("give both --price-in and --price-out (USD per 1M tokens)")
    if model is None:
        raise UsageError("--price-in/--price-out price one model: give exactly one --model "
                         "(the requests name several)")
    prices = []
    for label, text in (("--price-in", price_in), ("--price-out", price_out)):
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise UsageError(f"{label} {text!r} is not a number; give USD per 1M tokens, e.g. 2.50") from None
        if not value.is_finite() or not 0 <= value <= _MAX_PRICE:
            raise UsageError(f"{label} {text!r} must be a number from 0 to {_MAX_PRICE} (USD per 1M tokens)")
        prices.append(value)
    from ..pricing import custom_price

    return custom_price(model, prices[0], prices[1])


def _model_option(models: list[str] | None) -> list[str]:
    for m in models or []:
        if not m.strip():
            raise UsageError("--model is empty; give a model name, e.g. --model gpt-4o (`tokencost prices` lists them)")
    return list(models or [])


def _progress(total: int):
    """A progress callback on stderr for long inputs, only when stderr is a terminal."""
    if total < 200 or not stderr_is_tty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)  # stdout carries only the data
    task = bar.add_task("estimating", total=total)
    bar.start()
    return (lambda n: bar.update(task, completed=n)), bar.stop


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def estimate(
        file: FileArg,
        model: Annotated[Optional[list[str]], typer.Option("--model", "-m", metavar="MODEL", help="Model(s) to price; repeat to compare side by side.")] = None,
        completion_tokens: CompletionOpt = None,
        as_: AsOpt = None,
        at: AtOpt = None,
        price_in: PriceIn = None,
        price_out: PriceOut = None,
        image_size: ImageSizeOpt = None,
        format: FormatOpt = Format.table,
    ) -> None:
        """Count the prompt tokens of FILE exactly and price them (no network)."""
        from ..estimation import estimate_requests
        from ..inputs import load_requests

        day = parse_date(at, "--at")
        models = _model_option(model)
        loaded = load_requests(file)
        own = {r.body.get("model") for r in loaded}
        single = models[0] if len(models) == 1 else (own.pop() if not models and len(own) == 1 else None)
        price = _custom_price(single, price_in, price_out)
        tick, done = _progress(len(loaded))
        try:
            results = estimate_requests(loaded, models, completion_tokens=completion_tokens,
                                        mode=as_.value if as_ else None, at=day, price=price,
                                        image_sizes=_image_sizes(image_size), progress=tick)
        finally:
            done()
        if format is Format.json:
            data = [r.as_dict() for r in results]
            echo(render_json(data[0] if len(data) == 1 else data))
        elif format is Format.csv:
            echo(render_csv(SUMMARY_KEYS, ([r.as_dict()[k] for k in SUMMARY_KEYS] for r in results)))
        else:
            echo(_estimate_table(results))

    @app.command()
    @handle_errors
    def explain(
        file: FileArg,
        model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="MODEL", help="Model to explain (default: the request's).")] = None,
        completion_tokens: CompletionOpt = None,
        as_: AsOpt = None,
        at: AtOpt = None,
        price_in: PriceIn = None,
        price_out: PriceOut = None,
        image_size: ImageSizeOpt = None,
        format: FormatOpt = Format.table,
    ) -> None:
        """Show where every token and cent of FILE comes from."""
        from ..explanation import explain as explain_request
        from ..inputs import load_requests

        day = parse_date(at, "--at")
        loaded = load_requests(file)
        if model is not None:
            _model_option([model])
        price = _custom_price(model or loaded[0].body.get("model"), price_in, price_out)
        if len(loaded) != 1:
            raise UsageError(f"{file} holds {len(loaded)} requests; explain takes one (use estimate for many)")
        ex = explain_request(loaded[0].body, model, completion_tokens=completion_tokens,
                             mode=as_.value if as_ else None, at=day, price=price,
                             image_sizes=_image_sizes(image_size), source=loaded[0].where)
        if format is Format.json:
            echo(render_json(_explanation_dict(ex)))
        elif format is Format.csv:
            rows = _message_rows(ex)
            echo(render_csv(["message", "role", "content", "name", "images", "tool_calls", "overhead", "total"], rows))
        else:
            echo(_explanation_text(ex))


def _money(d: Decimal) -> str:
    return usd(d, places=6)


def _estimate_table(results) -> str:
    first = results[0]
    lines: list[str] = []
    sources = list(dict.fromkeys(r.source for r in results))
    multi = len(sources) > 1
    mode_note = {
        "conversation": "conversation (every assistant reply is a call that re-sends the history before it)",
        "request": "request (the messages are one prompt)",
    }
    if not multi:
        lines.append(f"{first.source}: {mode_note[first.mode]}")
        lines.append("")
    headers = (["source"] if multi else []) + [
        "model", "prompt", "completion", "prompt $", "completion $", "total $", "exact", "context", "fits",
    ]
    rows = []
    for r in results:
        completion = f"{r.completion_tokens:,}" + ("*" if r.completion_is_upper_bound else "")
        fits = "yes" if r.fits else (f"no (turn {r.first_overflow_turn})" if r.first_overflow_turn else "no")
        rows.append(([r.source] if multi else []) + [
            r.model, f"{r.prompt_tokens:,}", completion, _money(r.prompt_cost_usd),
            _money(r.completion_cost_usd), _money(r.total_cost_usd), "yes" if r.exact else "estimate",
            f"{r.context_window:,}" if r.context_window else "?", fits,
        ])
    if multi:
        total = sum((r.total_cost_usd for r in results), Decimal(0))
        rows.append(["total", "", f"{sum(r.prompt_tokens for r in results):,}",
                     f"{sum(r.completion_tokens for r in results):,}", "", "", _money(total), "", "", ""])
    lines.append(render_table(headers, rows))
    if any(r.completion_is_upper_bound for r in results):
        lines.append("* completion = the request's max_tokens, an upper bound; --completion-tokens sets it")
    if not multi and first.mode == "conversation":
        lines.append("")
        lines.append(_turns_table(results))
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    if notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _turns_table(results) -> str:
    same_tokens = len({tuple((t.prompt_tokens, t.completion_tokens) for t in r.turns) for r in results}) == 1
    if same_tokens:
        headers = ["turn", "prompt", "completion"] + [f"{r.model} $" for r in results]
        rows = []
        for i, t in enumerate(results[0].turns):
            label = f"{t.turn}" + (" (next)" if t.pending else "")
            rows.append([label, f"{t.prompt_tokens:,}", f"{t.completion_tokens:,}"]
                        + [_money(r.turns[i].cost.total) + ("" if r.turns[i].fits else " overflow") for r in results])
        return render_table(headers, rows)
    return "\n\n".join(
        f"{r.model}:\n" + render_table(
            ["turn", "prompt", "completion", "total $"],
            [[f"{t.turn}" + (" (next)" if t.pending else ""), f"{t.prompt_tokens:,}", f"{t.completion_tokens:,}",
              _money(t.cost.total) + ("" if t.fits else " overflow")] for t in r.turns],
        )
        for r in results
    )


def _message_rows(ex) -> list[list[object]]:
    return [
        [m.index, m.role, m.content_tokens, m.name_tokens, m.image_tokens, m.tool_call_tokens, m.overhead_tokens, m.total]
        for m in ex.count.messages
    ]


def _explanation_text(ex) -> str:
    c, est, p = ex.count, ex.estimate, ex.price
    out = [f"{est.source}: {est.model} (counted with {c.encoding}), read as one prompt", ""]
    out.append(render_table(
        ["message", "role", "content", "name", "images", "tool calls", "overhead", "total"], _message_rows(ex)
    ))
    out.append("")
    out.append(f"tools/functions definitions (hidden system text): {c.tools_tokens:,}")
    out.append(f"reply priming (<|start|>assistant<|message|>):     {c.priming_tokens:,}")
    out.append(f"prompt tokens:                                     {c.total:,}  "
               + ("(exact: rules verified against API-reported counts)" if c.exact else "(estimate)"))
    for n in c.notes:
        out.append(f"  note: {n}")
    if est.mode == "conversation":
        out.append("")
        out.append(f"As a conversation, {len(est.turns)} calls re-send the history:")
        out.append(_turns_table([est]))
    out.append("")
    out.append("price row used:")
    out.append(render_table(
        ["model", "from", "to", "prompt $/1K", "completion $/1K", "prompt $/1M", "completion $/1M", "source"],
        [[p.model, p.effective_from, p.effective_to or "now", _plain(p.prompt_per_1m / 1000),
          _plain(p.completion_per_1m / 1000), _plain(p.prompt_per_1m), _plain(p.completion_per_1m), p.source]],
    ))
    out.append("")
    out.append(f"cost ({est.mode}):")
    out.extend("  " + line for line in ex.arithmetic)
    out.append("")
    out.append("tokenizer compression of this text (more characters per token = fewer tokens to pay for):")
    out.append(render_table(
        ["encoding", "characters", "bytes", "tokens", "chars/token", "bytes/token"],
        [[x.encoding, f"{x.characters:,}", f"{x.bytes:,}", f"{x.tokens:,}", x.chars_per_token, x.bytes_per_token]
         for x in ex.compression],
    ))
    return "\n".join(out)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _explanation_dict(ex) -> dict:
    c = ex.count
    return {
        "model": ex.estimate.model,
        "encoding": c.encoding,
        "messages": [
            {"index": m.index, "role": m.role, "content_tokens": m.content_tokens, "name_tokens": m.name_tokens,
             "image_tokens": m.image_tokens, "tool_call_tokens": m.tool_call_tokens,
             "overhead_tokens": m.overhead_tokens, "total": m.total}
            for m in c.messages
        ],
        "tools_tokens": c.tools_tokens,
        "priming_tokens": c.priming_tokens,
        "prompt_tokens": c.total,
        "exact": c.exact,
        "notes": list(c.notes),
        "estimate": ex.estimate.as_dict(),
        "arithmetic": list(ex.arithmetic),
        "compression": [
            {"encoding": x.encoding, "characters": x.characters, "bytes": x.bytes, "tokens": x.tokens,
             "chars_per_token": str(x.chars_per_token), "bytes_per_token": str(x.bytes_per_token)}
            for x in ex.compression
        ],
    }
