"""A terminal chatbot, as in the classic GPT-4 tutorial, with every call logged by tokencost.

    export OPENAI_API_KEY=sk-...            # OPENAI_BASE_URL too, for a proxy or a local server
    python examples/chatbot.py --model gpt-4 --max-tokens 300

It keeps the whole conversation (after a system message), retries failed calls, answers in
colour and, after each turn, prints that turn's tokens and cost and the session's total — read
back from the tokencost ledger, so what you see is what ``tokencost calls`` will show. Type
``exit`` (or press Ctrl-D) to leave.

The only tokencost-specific line is ``client = tokencost.track(OpenAI(...))``; the tags block
around each turn is optional and only lets this script find its own rows again.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import openai
from openai import OpenAI
from rich.console import Console

import tokencost
from tokencost.ledger import default_db_path

MODELS = ("gpt-3.5-turbo", "gpt-4")
PICO = Decimal(10) ** 12
RETRYABLE = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Terminal chatbot; every call is logged to the tokencost ledger.")
    p.add_argument("--model", choices=MODELS, help="chat model (asked for when not given)")
    p.add_argument("--max-tokens", type=int, default=256, help="max_tokens for each reply (default 256)")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a failed call (default 3)")
    p.add_argument("--retry-delay", type=float, default=1.0, help="seconds before the first retry, doubled each time (default 1)")
    p.add_argument("--system", default="You are a helpful assistant.", help="the system message")
    p.add_argument("--stream", action="store_true", help="stream replies as they are written")
    p.add_argument("--db", type=Path, help="ledger file (default: $TOKENCOST_DB or the user data dir)")
    args = p.parse_args(argv)
    if args.max_tokens < 1 or args.max_retries < 0 or args.retry_delay < 0:
        p.error("--max-tokens must be >= 1, --max-retries and --retry-delay >= 0")
    return args


def choose_model(console: Console) -> str | None:
    while True:
        try:
            answer = console.input(f"Model [{'/'.join(MODELS)}] (Enter = {MODELS[0]}): ").strip()
        except EOFError:
            return None
        if not answer:
            return MODELS[0]
        if answer in MODELS:
            return answer
        console.print(f"[red]Please type one of: {', '.join(MODELS)}[/]")


def ask(client: OpenAI, console: Console, args: argparse.Namespace, history: list[dict[str, str]]) -> str:
    """One reply, retrying connection errors, 429s and 5xx with a doubling delay."""
    delay = args.retry_delay
    for attempt in range(args.max_retries + 1):
        try:
            if not args.stream:
                reply = client.chat.completions.create(model=args.model, messages=history, max_tokens=args.max_tokens)
                text = reply.choices[0].message.content or ""
                console.print(f"[bold cyan]Assistant:[/] [green]{_escape(text)}[/]")
                return text
            console.print("[bold cyan]Assistant:[/] ", end="")
            parts = []
            for chunk in client.chat.completions.create(
                model=args.model, messages=history, max_tokens=args.max_tokens, stream=True
            ):
                delta = chunk.choices[0].delta.content or ""  # never an empty-choices usage chunk here
                parts.append(delta)
                console.print(f"[green]{_escape(delta)}[/]", end="")
            console.print()
            return "".join(parts)
        except RETRYABLE as exc:
            if attempt == args.max_retries:
                raise
            console.print(f"[yellow]{_describe(exc)}; retry {attempt + 1} of {args.max_retries} in {delay:g}s[/]")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def turn_totals(db: Path, session: str, turn: int | None = None) -> tuple[int, int, int, Decimal, int]:
    """(calls, prompt tokens, completion tokens, cost in USD, unpriced calls) from the ledger."""
    sql = ("SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
           "coalesce(sum(total_cost_pusd), 0), sum(total_cost_pusd IS NULL AND status = 200) "
           "FROM calls WHERE json_extract(tags, '$.session') = ?")
    params: list[object] = [session]
    if turn is not None:
        sql += " AND json_extract(tags, '$.turn') = ?"
        params.append(str(turn))
    try:
        con = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode=ro", uri=True)
        try:
            calls, prompt, completion, pusd, unpriced = con.execute(sql, params).fetchone()
        finally:
            con.close()
    except sqlite3.Error:  # no ledger yet (tokencost spooled the rows and warned): show zeros
        return 0, 0, 0, Decimal(0), 0
    return calls, prompt, completion, Decimal(pusd) / PICO, unpriced or 0


def money(usd: Decimal) -> str:
    return f"${usd:.6f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False)
    if args.model is None:
        args.model = choose_model(console)
        if args.model is None:
            return 0
    session = uuid.uuid4().hex[:12]

    if not os.environ.get("OPENAI_API_KEY"):
        print("Error: OPENAI_API_KEY is not set; export it (and OPENAI_BASE_URL for a proxy or local server)",
              file=sys.stderr)
        return 2

    # The one line that turns on logging. Retries are ours (--max-retries), so the SDK's are off.
    client = tokencost.track(OpenAI(max_retries=0), db=args.db, tags={"app": "chatbot", "session": session})

    db = args.db or default_db_path()
    history = [{"role": "system", "content": args.system}]
    console.print(f"[bold]Chatting with {args.model}[/] (max_tokens {args.max_tokens}). Type 'exit' to quit.")
    turn = 0
    while True:
        try:
            user = console.input("[bold magenta]You:[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if user.strip().lower() in ("exit", "quit"):
            break
        if not user.strip():
            continue
        turn += 1
        history.append({"role": "user", "content": user})
        try:
            with tokencost.tags(turn=str(turn)):
                reply = ask(client, console, args, history)
        except openai.OpenAIError as exc:
            history.pop()  # the question was not answered; do not send it twice
            console.print(f"[red]Error: {_describe(exc)}[/]")
            reply = None
        except KeyboardInterrupt:  # Ctrl-C during a reply: drop this turn, keep chatting
            history.pop()
            console.print("\n[yellow]Interrupted.[/]")
            reply = None
        if reply is not None:
            history.append({"role": "assistant", "content": reply})
        calls, p, c, cost, unpriced = turn_totals(db, session, turn)
        s_calls, s_p, s_c, s_cost, s_unpriced = turn_totals(db, session)
        note = " (some calls unpriced)" if unpriced else ""
        console.print(
            f"[dim]turn {turn}: {p} prompt + {c} completion tokens, {money(cost)}{note} ({calls} call{'s' * (calls != 1)})"
            f" | session: {s_p + s_c} tokens, {money(s_cost)} ({s_calls} call{'s' * (s_calls != 1)})[/]"
        )
    s_calls, s_p, s_c, s_cost, _ = turn_totals(db, session) if turn else (0, 0, 0, Decimal(0), 0)
    console.print(f"Session total: {s_calls} calls, {s_p} prompt + {s_c} completion tokens, {money(s_cost)}")
    return 0


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


if __name__ == "__main__":
    sys.exit(main())
