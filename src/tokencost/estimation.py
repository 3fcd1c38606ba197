"""A request or a conversation -> what it will cost (:class:`Estimate`).

Two ways to read a list of messages:

* ``request``: the messages are one prompt. The completion is ``completion_tokens`` if given, else the
  request's ``max_tokens``/``max_completion_tokens`` (an upper bound), else 0.
* ``conversation``: a chatbot transcript. Every assistant message is the completion of a call whose prompt
  is everything before it, so the history is paid for again at every turn. A transcript that ends on a
  non-assistant message has one more, pending, turn priced like ``request`` mode.

The default is ``conversation`` when the messages hold an assistant reply after the first non-system
message, else ``request``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Literal, Sequence

from .counting import PromptCount, count_prompts, count_text_tokens
from .errors import TokencostError, UnknownModel, UsageError
from .inputs import LoadedRequest
from .models import resolve_model, snapshot_at
from .pricing import Cost, Price, price_for

__all__ = ["Estimate", "Turn", "estimate", "estimate_with_count", "estimate_requests", "choose_mode", "resolve_pricing", "FALLBACK_MODEL"]

Mode = Literal["request", "conversation"]

# An unknown model priced with --price-in/--price-out is counted like this one (and marked inexact).
FALLBACK_MODEL = "gpt-4o"


@dataclass(frozen=True)
class Turn:
    """One billed call of a conversation."""

    turn: int  # 1-based
    message_index: int  # the assistant reply that completes it; len(messages) for a pending turn
    prompt_tokens: int
    completion_tokens: int
    cost: Cost
    fits: bool
    pending: bool = False


@dataclass(frozen=True)
class Estimate:
    model: str
    mode: Mode
    prompt_tokens: int
    completion_tokens: int
    completion_is_upper_bound: bool
    prompt_cost_usd: Decimal
    completion_cost_usd: Decimal
    total_cost_usd: Decimal
    exact: bool
    context_window: int | None
    fits: bool
    price: Price
    source: str = ""
    first_overflow_turn: int | None = None
    turns: tuple[Turn, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """The JSON contract of ``tokencost estimate --format json`` (money as decimal strings)."""
        d: dict[str, Any] = {
            "source": self.source,
            "model": self.model,
            "mode": self.mode,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "completion_is_upper_bound": self.completion_is_upper_bound,
            "prompt_cost_usd": _dec(self.prompt_cost_usd),
            "completion_cost_usd": _dec(self.completion_cost_usd),
            "total_cost_usd": _dec(self.total_cost_usd),
            "exact": self.exact,
            "context_window": self.context_window,
            "fits": self.fits,
            "first_overflow_turn": self.first_overflow_turn,
            "price_id": self.price.id,
            "price_source": self.price.source,
            "notes": list(self.notes),
        }
        if self.mode == "conversation":
            d["turns"] = [
                {
                    "turn": t.turn,
                    "message_index": t.message_index,
                    "prompt_tokens": t.prompt_tokens,
                    "completion_tokens": t.completion_tokens,
                    "total_cost_usd": _dec(t.cost.total),
                    "fits": t.fits,
                    "pending": t.pending,
                }
                for t in self.turns
            ]
        return d


def _dec(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


def choose_mode(messages: Sequence[dict[str, Any]]) -> Mode:
    """``conversation`` if any assistant message answers something, else ``request``."""
    seen_prompt = False
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "assistant" and seen_prompt:
            return "conversation"
        if role not in (None, "system", "developer"):
            seen_prompt = True
    return "request"


def resolve_pricing(model: str, at: date | datetime | None, price: Price | None) -> tuple[str, Price, list[str]]:
    """The model to count with, the price to apply, and notes about substitutions."""
    notes: list[str] = []
    try:
        info = snapshot_at(model, at) if at is not None else resolve_model(model)
        counting_model = info.name
    except UnknownModel:
        if price is None:
            _explain_non_chat(model)
            raise
        counting_model = FALLBACK_MODEL
        notes.append(f"{model!r} is not a known model: tokens counted as {FALLBACK_MODEL} (an estimate)")
    return counting_model, (price if price is not None else price_for(model, at=at)), notes


def _explain_non_chat(model: str) -> None:
    """A model with a price but no chat formula (embeddings, instruct) gets a precise error."""
    from .pricing import list_prices

    try:
        rows = list_prices(model)
    except TokencostError:
        return
    if rows:
        raise UsageError(
            f"{model!r} is not a chat model: tokencost counts chat-completion prompts; "
            f"its price is listed by `tokencost prices --model {model}`"
        )


def estimate(
    request: dict[str, Any] | list[dict[str, Any]],
    model: str | None = None,
    *,
    completion_tokens: int | None = None,
    mode: Mode | None = None,
    at: date | datetime | None = None,
    price: Price | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
    source: str = "",
) -> Estimate:
    """Estimate what ``request`` (a request body or a list of messages) costs on ``model``."""
    return estimate_with_count(request, model, completion_tokens=completion_tokens, mode=mode, at=at,
                               price=price, image_sizes=image_sizes, source=source)[0]


def estimate_with_count(
    request: dict[str, Any] | list[dict[str, Any]],
    model: str | None = None,
    *,
    completion_tokens: int | None = None,
    mode: Mode | None = None,
    at: date | datetime | None = None,
    price: Price | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
    source: str = "",
) -> tuple[Estimate, PromptCount]:
    """:func:`estimate`, plus the prompt count it was built from (the messages read as one prompt)."""
    body: dict[str, Any] = {"messages": request} if isinstance(request, list) else dict(request)
    try:
        model = _model_of(body, model, source)
        counting_model, the_price, notes = resolve_pricing(model, at, price)
        [pc] = count_prompts([body], counting_model, image_sizes=image_sizes)
        est = _from_count(body, model, counting_model, pc, the_price, notes,
                          completion_tokens=completion_tokens, mode=mode, source=source)
        return est, pc
    except TokencostError as exc:
        raise _located(exc, source) from None


def _model_of(body: dict[str, Any], model: str | None, source: str) -> str:
    model = model or body.get("model")
    if not model:
        raise UsageError(
            f"{source + ': ' if source else ''}no model given; add \"model\" to the request or pass --model"
        )
    return model


def _from_count(
    body: dict[str, Any], model: str, counting_model: str, pc: PromptCount, the_price: Price,
    notes: list[str], *, completion_tokens: int | None, mode: Mode | None, source: str,
) -> Estimate:
    if completion_tokens is not None and completion_tokens < 0:
        raise UsageError("--completion-tokens must be 0 or more")
    info = resolve_model(counting_model)
    substituted = bool(notes)  # resolve_pricing only notes a stand-in counting model
    notes = list(notes) + list(pc.notes)
    exact = pc.exact and not substituted
    messages = body["messages"]
    chosen: Mode = mode or choose_mode(messages)

    max_out = body.get("max_completion_tokens", body.get("max_tokens"))
    pending_completion = completion_tokens if completion_tokens is not None else (max_out or 0)
    upper_bound = completion_tokens is None and bool(max_out)
    ctx = info.context_window

    if chosen == "request":
        cost = the_price.cost(pc.total, pending_completion)
        return Estimate(
            model=model, mode="request", prompt_tokens=pc.total, completion_tokens=pending_completion,
            completion_is_upper_bound=upper_bound, prompt_cost_usd=cost.prompt,
            completion_cost_usd=cost.completion, total_cost_usd=cost.total, exact=exact,
            context_window=ctx, fits=ctx is None or pc.total + pending_completion <= ctx,
            price=the_price, source=source, notes=tuple(notes),
        )

    # Conversation: the prompt of the call answered by message i is messages[:i]. Per-message counts
    # are independent of each other, so each turn's prompt is a prefix sum plus the fixed parts.
    fixed = pc.tools_tokens + pc.priming_tokens
    per_message = [m.total for m in pc.messages]
    turns: list[Turn] = []
    running = 0
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant" and i > 0:
            prompt = running + fixed
            completion, completion_exact = _completion_tokens(msg, counting_model)
            exact = exact and completion_exact
            cost = the_price.cost(prompt, completion)
            turns.append(Turn(len(turns) + 1, i, prompt, completion, cost, ctx is None or prompt + completion <= ctx))
        running += per_message[i]
    if messages[-1].get("role") != "assistant":
        prompt = running + fixed
        cost = the_price.cost(prompt, pending_completion)
        turns.append(
            Turn(len(turns) + 1, len(messages), prompt, pending_completion, cost,
                 ctx is None or prompt + pending_completion <= ctx, pending=True)
        )
        notes.append(f"turn {len(turns)} is the next call (the transcript ends on a {messages[-1].get('role')} message)")
    total_prompt = sum(t.prompt_tokens for t in turns)
    total_completion = sum(t.completion_tokens for t in turns)
    cost = the_price.cost(total_prompt, total_completion)
    overflow = next((t.turn for t in turns if not t.fits), None)
    return Estimate(
        model=model, mode="conversation", prompt_tokens=total_prompt, completion_tokens=total_completion,
        completion_is_upper_bound=upper_bound and bool(turns and turns[-1].pending),
        prompt_cost_usd=cost.prompt, completion_cost_usd=cost.completion, total_cost_usd=cost.total,
        exact=exact, context_window=ctx, fits=overflow is None, price=the_price, source=source,
        first_overflow_turn=overflow, turns=tuple(turns), notes=tuple(notes),
    )


def _completion_tokens(message: dict[str, Any], model: str) -> tuple[int, bool]:
    """Tokens the API bills for an assistant reply: its text; tool calls are an estimate."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    n = count_text_tokens(content, model) if isinstance(content, str) and content else 0
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append({"function": message["function_call"]})
    for call in calls:
        fn = call.get("function") or {}
        n += count_text_tokens(str(fn.get("name", "")) + str(fn.get("arguments", "")), model)
    return n, not calls


def estimate_requests(
    loaded: Sequence[LoadedRequest],
    models: Sequence[str] = (),
    *,
    completion_tokens: int | None = None,
    mode: Mode | None = None,
    at: date | datetime | None = None,
    price: Price | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Estimate]:
    """Estimate every request for every model (or each request's own ``model`` when none given).

    Requests are counted in batches (all the text of a batch is encoded at once, on every core), so a
    large JSONL file costs little more than tokenizing its text.
    """
    out: list[Estimate] = []
    batch = 512
    for start in range(0, len(loaded), batch):
        chunk = loaded[start : start + batch]
        jobs: dict[str, list[tuple[int, LoadedRequest, str, Price, list[str]]]] = {}
        for k, item in enumerate(chunk):
            for m in models or [None]:
                try:
                    name = _model_of(item.body, m, item.where)
                    counting_model, the_price, notes = resolve_pricing(name, at, price)
                except TokencostError as exc:
                    raise _located(exc, item.where) from None
                jobs.setdefault(counting_model, []).append((k, item, name, the_price, notes))
        results: dict[tuple[int, str], Estimate] = {}
        for counting_model, items in jobs.items():
            try:
                counts = count_prompts([it[1].body for it in items], counting_model, image_sizes=image_sizes)
            except TokencostError:
                counts = None  # find which request is bad, one by one, to say where
            for n, (k, item, name, the_price, notes) in enumerate(items):
                try:
                    pc = counts[n] if counts else count_prompts([item.body], counting_model, image_sizes=image_sizes)[0]
                    results[(k, name)] = _from_count(
                        item.body, name, counting_model, pc, the_price, notes,
                        completion_tokens=completion_tokens, mode=mode, source=item.where,
                    )
                except TokencostError as exc:
                    raise _located(exc, item.where) from None
        for k, item in enumerate(chunk):
            for m in models or [None]:
                out.append(results[(k, m or item.body.get("model"))])
        if progress:
            progress(start + len(chunk))
    return out


def _located(exc: TokencostError, where: str) -> TokencostError:
    """The same kind of error with the file/line prefixed, so a JSONL failure says which line."""
    if not where or str(exc).startswith(where):
        return exc
    new = TokencostError(f"{where}: {exc}")
    new.exit_code = exc.exit_code
    return new
