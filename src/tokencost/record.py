"""One call -> one ledger row: :func:`build_record` turns a request and what came back into a
:class:`CallRecord`, the same way for the wrapper (``via="wrap"``) and the proxy (``via="proxy"``).

Rules (issue 3):

* A call that got a 2xx answer is billed. Usage the API reported always wins
  (``usage_source="api"``). When a successful response carries none (a stream without
  ``include_usage``, one cut or abandoned midway), our own count is used and marked
  ``usage_source="estimated"``: the prompt from :func:`tokencost.counting.count_prompt_tokens`,
  the completion from the text received via :func:`tokencost.counting.count_text_tokens`.
* A call that failed (HTTP error, timeout, connection error: status not 2xx or None) bills zero
  tokens and zero cost; ``usage_source`` is NULL because nothing was metered.
* Usage that is not plain token counts (negative, text, float, 2**53 or more) is not believed: the
  row is estimated as if the API had sent none, and one warning per process says which field.
* Every row keeps our pre-call prompt estimate in ``estimated_prompt_tokens``.
* Cost uses the price in force at ``started_at`` for the model the API says served the call, as
  integer picodollars (:func:`tokencost.pricing.to_pico`). No price -> NULL costs, never 0.
* Keys and headers are never part of a record; prompt and completion text only with
  ``store_content=True``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from typing import Any, Mapping

from . import pricing
from .errors import TokencostError
from .usage import check_usage, response_model, response_text

__all__ = ["CallRecord", "build_record", "COLUMNS", "iso_utc", "new_id"]

_UNSET: Any = object()


@dataclass(frozen=True)
class CallRecord:
    """One row of the ledger's ``calls`` table (columns in contract order)."""

    id: str
    started_at: str
    latency_ms: float | None
    endpoint: str
    model_requested: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    total_tokens: int | None
    prompt_cost_pusd: int | None
    completion_cost_pusd: int | None
    total_cost_pusd: int | None
    price_id: str | None
    price_source: str | None
    usage_source: str | None
    estimated_prompt_tokens: int | None
    status: int | None
    error_type: str | None
    request_id: str | None
    streamed: int
    tags: str
    app: str | None
    via: str | None
    prompt_text: str | None = None
    completion_text: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "CallRecord":
        return cls(**{f.name: row.get(f.name) for f in fields(cls)})


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))


def iso_utc(when: datetime | date | str | None) -> str:
    """``2026-11-29T12:00:00.123456Z``: the one timestamp format of the ledger (sorts as text)."""
    if type(when) is datetime and when.tzinfo is timezone.utc:  # the wrapper's case: no conversion
        return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if when is None:
        when = datetime.now(timezone.utc)
    if isinstance(when, str):
        text = when.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        when = datetime.fromisoformat(text)
    if not isinstance(when, datetime):  # a bare date: midnight UTC
        when = datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: unique like uuid4, but ordered by time, so each insert
    lands at the right edge of the ledger's primary-key index instead of a random page (measured:
    about a third off the cost of an INSERT into a 50k-row ledger)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | (rand & (1 << 62) - 1)
    return f"{value:032x}"


def _when(started_at: datetime | date | str | None) -> datetime:
    if type(started_at) is datetime and started_at.tzinfo is timezone.utc:
        return started_at
    try:
        text = iso_utc(started_at)
    except (ValueError, TypeError):  # a malformed timestamp must not cost us the row
        text = iso_utc(None)
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def build_record(
    *,
    endpoint: str,
    request: Mapping[str, Any] | None,
    response: Any,
    status: int | None,
    error_type: str | None,
    started_at: datetime | date | str | None,
    latency_ms: float | None,
    streamed: bool,
    tags: Mapping[str, Any] | None,
    via: str | None,
    app: str | None = None,
    store_content: bool = False,
    completion_text_for_estimate: str | None = None,
    request_id: str | None = None,
    estimated_prompt_tokens: int | None = _UNSET,
) -> CallRecord:
    """Build the row for one call. Pure: reads nothing but its arguments and the price table.

    ``request_id`` (the ``x-request-id`` header) and ``estimated_prompt_tokens`` (when the caller
    already counted before sending) are optional extras; by default the estimate is computed here.
    """
    if request is None:
        request = {}
    model_requested = _str(request.get("model"))
    model = response_model(response) or model_requested
    when = _when(started_at)
    if estimated_prompt_tokens is _UNSET:
        estimated_prompt_tokens = estimate_prompt_tokens(endpoint, request, model_requested or model)

    succeeded = status is not None and 200 <= int(status) < 300
    text = completion_text_for_estimate

    prompt = completion = cached = reasoning = total = None
    usage_source: str | None = None
    costs: tuple[int | None, int | None, int | None] = (None, None, None)
    price_id = price_source = None
    if succeeded:
        usage, problem = check_usage(response)
        if problem is not None:
            _warn_invalid_usage(endpoint, model, problem)
        if usage is not None:
            usage_source = "api"
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            cached, reasoning, total = usage.cached_tokens, usage.reasoning_tokens, usage.total_tokens
        else:
            usage_source = "estimated"
            prompt = estimated_prompt_tokens
            if text is None:
                text = response_text(response)
            completion = 0 if endpoint == "embeddings" else _count_text(text or "", model, model_requested)
            cached, reasoning = 0, 0
            total = prompt + completion if prompt is not None and completion is not None else None
        if prompt is not None and completion is not None and model:
            costs, price_id, price_source = _price(model, when, prompt, completion, cached or 0)
    else:
        # Nothing was metered: zero billed tokens, zero cost (known, not unpriced).
        prompt = completion = cached = reasoning = total = 0
        costs = (0, 0, 0)

    return CallRecord(
        id=new_id(),
        started_at=iso_utc(when),
        latency_ms=float(latency_ms) if latency_ms is not None else None,
        endpoint=endpoint,
        model_requested=model_requested,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        total_tokens=total,
        prompt_cost_pusd=costs[0],
        completion_cost_pusd=costs[1],
        total_cost_pusd=costs[2],
        price_id=price_id,
        price_source=price_source,
        usage_source=usage_source,
        estimated_prompt_tokens=estimated_prompt_tokens,
        status=int(status) if status is not None else None,
        error_type=error_type,
        request_id=request_id,
        streamed=1 if streamed else 0,
        tags=json.dumps({str(k): str(v) for k, v in tags.items()}, sort_keys=True, ensure_ascii=False) if tags else "{}",
        app=app,
        via=via,
        prompt_text=_prompt_text(endpoint, request) if store_content else None,
        completion_text=(text if text is not None else response_text(response)) if store_content else None,
    )


_warned_lock = threading.Lock()
_warned_pid: int | None = None


def _warn_invalid_usage(endpoint: str, model: str | None, problem: str) -> None:
    # Once per process: a broken upstream sends the same garbage on every call.
    global _warned_pid
    with _warned_lock:
        if _warned_pid == os.getpid():
            return
        _warned_pid = os.getpid()
    from .ledger import LedgerWarning  # lazy: ledger imports this module

    warnings.warn(LedgerWarning(
        f"tokencost: the API returned an invalid usage field ({problem}) for a {endpoint} call to "
        f"{model or 'an unknown model'}; that call is logged with our own token count "
        "(usage_source='estimated') instead"), stacklevel=3)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _price(model: str, when: datetime, prompt: int, completion: int, cached: int
           ) -> tuple[tuple[int | None, int | None, int | None], str | None, str | None]:
    try:
        price = pricing.price_for_recent(model, when)
        costs = price.cost_pico(prompt, completion, min(cached, prompt))
    except TokencostError:
        return (None, None, None), None, None  # unpriced: NULL, never a made-up 0
    except Exception:  # a pricing bug must not lose the row: keep it, unpriced
        return (None, None, None), None, None
    return costs, price.id, price.source


# Non-chat models (legacy completions, embeddings) that the chat model registry may not list.
# All use cl100k_base (OpenAI model pages; tiktoken's MODEL_TO_ENCODING). Move to models.py when
# the registry covers them.
_TEXT_MODEL_ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-3.5-turbo-instruct", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"),
    ("text-embedding-3-large", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
)


def _count_text(text: str, *models: str | None, memo: bool = False) -> int | None:
    from ._batch import lengths as _lengths
    from .counting import count_text_tokens

    for model in models:
        if not model:
            continue
        try:
            return count_text_tokens(text, model, memo=memo)
        except TokencostError:
            pass
        except Exception:  # a counting bug must not lose the row; the estimate is just missing
            return None
        for prefix, encoding in _TEXT_MODEL_ENCODINGS:
            if model == prefix or model.startswith(prefix + "-") or model.startswith(prefix + ":"):
                return _lengths(encoding, [text], memo)[0]
    return None


def estimate_prompt_tokens(endpoint: str, request: Mapping[str, Any], model: str | None) -> int | None:
    """Our count of the prompt before the call; None when we cannot count it (unknown model...).

    Texts seen before are not encoded again (:mod:`tokencost._memo`): a chatbot resends its
    history every turn, and only the new message costs anything."""
    if not model:
        return None
    try:
        if endpoint == "chat.completions":
            from .counting import count_prompt_tokens

            return count_prompt_tokens(request if isinstance(request, dict) else dict(request), model, memo=True)
        if endpoint == "completions":
            return _count_inputs(request.get("prompt"), model)
        if endpoint == "embeddings":
            return _count_inputs(request.get("input"), model)
        if endpoint == "responses":
            messages = _responses_messages(request)
            if messages is None:
                return None
            from .counting import count_prompt_tokens

            return count_prompt_tokens(messages, model, memo=True)
    except TokencostError:
        return None
    except Exception:  # the estimate is optional; a bug in counting must never lose the row
        return None
    return None


def _count_inputs(value: Any, model: str) -> int | None:
    """Strings are encoded; token arrays are already counted."""
    if isinstance(value, str):
        return _count_text(value, model, memo=True)
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return len(value)
        total = 0
        for v in value:
            n = _count_inputs(v, model)
            if n is None:
                return None
            total += n
        return total
    return None


def _responses_messages(request: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """The Responses API input as chat messages, when it is plain text (else None: no estimate)."""
    messages: list[dict[str, str]] = []
    if isinstance(request.get("instructions"), str):
        messages.append({"role": "system", "content": request["instructions"]})
    value = request.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
        return messages
    if not isinstance(value, list):
        return None
    for item in value:
        if not isinstance(item, Mapping) or item.get("type", "message") != "message":
            return None
        content = item.get("content")
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, Mapping)]
            if not all(isinstance(t, str) for t in texts):
                return None
            content = "".join(texts)  # type: ignore[arg-type]
        if not isinstance(content, str) or not isinstance(item.get("role"), str):
            return None
        messages.append({"role": item["role"], "content": content})
    return messages


def _prompt_text(endpoint: str, request: Mapping[str, Any]) -> str | None:
    """What the user sent, for ``store_content=True`` only (the body; never headers or keys)."""
    if endpoint == "chat.completions":
        value: Any = request.get("messages")
    elif endpoint == "completions":
        value = request.get("prompt")
    elif endpoint == "embeddings":
        value = request.get("input")
    else:
        value = {k: request[k] for k in ("instructions", "input") if k in request}
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
