"""Usage as the API reported it, read from any endpoint's response body or stream events.

One reader for every shape OpenAI sends, shared by the wrapper and the proxy:

* Chat Completions and legacy Completions: ``usage.prompt_tokens`` / ``completion_tokens``, with
  ``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens``; a
  streamed chat carries it on the final chunk (empty ``choices``) when
  ``stream_options.include_usage`` was asked.
* Responses API: ``usage.input_tokens`` / ``output_tokens`` with ``input_tokens_details`` and
  ``output_tokens_details``; streamed, inside the ``response`` of ``response.completed``
  (or ``response.incomplete`` / ``response.failed``).
* Embeddings: ``usage.prompt_tokens`` only (no completion).

Cached tokens are part of the prompt count and reasoning tokens part of the completion count,
exactly as the API bills them; nothing here adds or subtracts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = [
    "Usage",
    "extract_usage",
    "usage_from_block",
    "check_usage",
    "MAX_TOKENS",
    "response_model",
    "response_text",
    "StreamAccumulator",
    "endpoint_for_path",
    "ENDPOINTS",
]

ENDPOINTS = ("chat.completions", "responses", "completions", "embeddings")

#: Token counts at or above this are not believed: 2**53 is where JSON numbers stop being exact in
#: most parsers, far above any real call, and well inside SQLite's 64-bit INTEGER.
MAX_TOKENS = 2**53

_RESPONSE_EVENTS_WITH_USAGE = ("response.completed", "response.incomplete", "response.failed")
_TEXT_DELTA_EVENTS = ("response.output_text.delta", "response.refusal.delta",
                      "response.function_call_arguments.delta")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.total_tokens is None:
            object.__setattr__(self, "total_tokens", self.prompt_tokens + self.completion_tokens)


def _as_dict(obj: Any) -> Any:
    """Plain data from a dict, a pydantic model (openai's types) or JSON text/bytes."""
    if obj is None or isinstance(obj, (dict, list, int, float, bool)):
        return obj
    if isinstance(obj, (bytes, bytearray)):
        obj = obj.decode("utf-8", "replace")
    if isinstance(obj, str):
        try:
            return json.loads(obj)
        except ValueError:
            return None
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:
            return None
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception:
            return None
    return None


class _Invalid(ValueError):
    """A usage number the API sent that is not a token count (negative, text, float, huge...)."""


def _int(value: Any, field: str) -> int:
    """A token count, or 0 when the field is absent/null. Anything but a plain int in
    ``[0, MAX_TOKENS)`` raises: a garbled number must never be stored (or billed) as real usage."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_TOKENS:
        return value
    shown = repr(value)
    raise _Invalid(f"{field}={shown[:40] + '...' if len(shown) > 40 else shown}")


def _detail(usage: Mapping[str, Any], key: str, field: str) -> int:
    details = usage.get(key)
    return _int(details.get(field), f"{key}.{field}") if isinstance(details, Mapping) else 0


def usage_from_block(usage: Any) -> Usage | None:
    """A ``usage`` object of any endpoint -> :class:`Usage`; None if it is absent, empty or
    invalid (see :func:`check_usage`)."""
    return _read_block(usage)[0]


def _read_block(usage: Any) -> tuple[Usage | None, str | None]:
    raw = usage
    usage = _as_dict(usage)
    if not isinstance(usage, Mapping):
        return None, (None if raw is None else f"usage is not an object ({type(raw).__name__})")
    if not usage:
        return None, None
    try:
        if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
            prompt = _int(usage.get("input_tokens"), "input_tokens")
            completion = _int(usage.get("output_tokens"), "output_tokens")
            cached = _detail(usage, "input_tokens_details", "cached_tokens")
            reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
        elif "prompt_tokens" in usage or "completion_tokens" in usage:
            prompt = _int(usage.get("prompt_tokens"), "prompt_tokens")
            completion = _int(usage.get("completion_tokens"), "completion_tokens")
            cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
            reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
        else:
            return None, None
        total = usage.get("total_tokens")
        total = _int(total, "total_tokens") if total is not None else None
    except _Invalid as exc:
        return None, str(exc)
    return Usage(prompt, completion, cached, reasoning, total), None


def extract_usage(body: Any) -> Usage | None:
    """Usage from a response body, a final stream chunk or a Responses stream event.

    Accepts dicts, openai pydantic objects and JSON text. None when the body carries no usage
    (a stream chunk before the last, a stream without ``include_usage``, an error body) or when
    the usage it carries is invalid (:func:`check_usage` says which field).
    """
    return check_usage(body)[0]


def check_usage(body: Any) -> tuple[Usage | None, str | None]:
    """``(usage, problem)`` for a body as :func:`extract_usage` reads it. ``problem`` names the
    invalid field (e.g. ``"prompt_tokens=-10"``) when the body has a usage block that is not
    plain token counts (ints ``0 <= n < MAX_TOKENS``); the usage is then None, as if absent."""
    data = _as_dict(body)
    if not isinstance(data, Mapping):
        return None, None
    if isinstance(data.get("type"), str) and isinstance(data.get("response"), Mapping):
        # a Responses stream event: usage lives in the response it carries
        return _read_block(data["response"].get("usage"))
    return _read_block(data.get("usage"))


def response_model(body: Any) -> str | None:
    """The model the API says served the call (``model`` of the body or of the event's response)."""
    data = _as_dict(body)
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("response"), Mapping) and isinstance(data.get("type"), str):
        data = data["response"]
    model = data.get("model")
    return model if isinstance(model, str) and model else None


def response_text(body: Any) -> str | None:
    """The generated text of a non-streamed body (all choices / output items, in order)."""
    data = _as_dict(body)
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("response"), Mapping) and isinstance(data.get("type"), str):
        data = data["response"]
    parts: list[str] = []
    choices = data.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            message = choice.get("message")
            if isinstance(message, Mapping):
                parts.extend(_message_text(message))
            elif isinstance(choice.get("text"), str):  # legacy completions
                parts.append(choice["text"])
    output = data.get("output")
    if isinstance(output, list):  # Responses API
        for item in output:
            if not isinstance(item, Mapping):
                continue
            for part in item.get("content") or []:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
            if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
                parts.append(item["arguments"])
    return "".join(parts) if parts else None


def _message_text(message: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("content", "refusal"):
        if isinstance(message.get(key), str):
            out.append(message[key])
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            out.extend(v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str))
    fn = message.get("function_call")
    if isinstance(fn, Mapping):
        out.extend(v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str))
    return out


class StreamAccumulator:
    """Follows a streamed response chunk by chunk: text so far, model, id, final usage.

    ``feed`` takes a parsed chunk/event (dict or openai object); ``feed_sse_line`` a raw
    ``data: {...}`` line. ``usage`` stays None unless the stream carried it; ``text`` is what
    was received, for estimating the completion when it did not.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.model: str | None = None
        self.id: str | None = None
        self.usage: Usage | None = None
        self.final: dict[str, Any] | None = None  # the Responses API's finished response, if seen
        self.done = False
        self.chunks = 0

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def feed_sse_line(self, line: str | bytes) -> None:
        if isinstance(line, (bytes, bytearray)):
            line = line.decode("utf-8", "replace")
        line = line.strip()
        if not line.startswith("data:"):
            return
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return
        try:
            self.feed(json.loads(payload))
        except ValueError:
            return

    def feed(self, chunk: Any) -> None:
        data = _as_dict(chunk)
        if not isinstance(data, Mapping):
            return
        self.chunks += 1
        kind = data.get("type")
        if isinstance(kind, str):
            self._feed_event(kind, data)
            return
        self.model = data.get("model") or self.model
        self.id = data.get("id") or self.id
        usage = usage_from_block(data.get("usage"))
        if usage is not None:
            self.usage = usage
        for choice in data.get("choices") or []:
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._parts.extend(_message_text(delta))
            elif isinstance(choice.get("text"), str):
                self._parts.append(choice["text"])

    def _feed_event(self, kind: str, data: Mapping[str, Any]) -> None:
        response = data.get("response")
        if isinstance(response, Mapping):
            self.model = response.get("model") or self.model
            self.id = response.get("id") or self.id
            if kind in _RESPONSE_EVENTS_WITH_USAGE:
                self.final = dict(response)
                self.done = True
                usage = usage_from_block(response.get("usage"))
                if usage is not None:
                    self.usage = usage
        if kind in _TEXT_DELTA_EVENTS and isinstance(data.get("delta"), str):
            self._parts.append(data["delta"])


def endpoint_for_path(path: str) -> str | None:
    """``/v1/chat/completions`` -> ``"chat.completions"`` etc.; None for unbilled paths."""
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "chat.completions"
    if p.endswith("/responses"):
        return "responses"
    if p.endswith("/completions"):
        return "completions"
    if p.endswith("/embeddings"):
        return "embeddings"
    return None
