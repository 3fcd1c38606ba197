"""Why a request costs what it costs: every token and every cent, line by line.

:func:`explain` returns data (:class:`Explanation`); the CLI renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .counting import PromptCount
from .encodings import ENCODINGS, get_encoding
from .estimation import Estimate, Mode, estimate_with_count
from .pricing import Price

__all__ = ["Explanation", "Compression", "explain", "compression"]


@dataclass(frozen=True)
class Compression:
    """How well an encoding packs the request's text: more bytes per token means fewer tokens to pay."""

    encoding: str
    characters: int
    bytes: int
    tokens: int

    @property
    def chars_per_token(self) -> Decimal:
        return (Decimal(self.characters) / self.tokens).quantize(Decimal("0.01")) if self.tokens else Decimal(0)

    @property
    def bytes_per_token(self) -> Decimal:
        return (Decimal(self.bytes) / self.tokens).quantize(Decimal("0.01")) if self.tokens else Decimal(0)


@dataclass(frozen=True)
class Explanation:
    count: PromptCount  # the messages read as one prompt
    estimate: Estimate  # in the chosen mode
    price: Price
    arithmetic: tuple[str, ...]
    compression: tuple[Compression, ...]


def _texts(body: dict[str, Any]) -> list[str]:
    """Every human-readable string the prompt carries (message text, names, tool arguments)."""
    out: list[str] = []
    for m in body.get("messages", []):
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        if isinstance(m.get("name"), str):
            out.append(m["name"])
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {} if isinstance(call, dict) else {}
            out.extend(str(fn.get(k, "")) for k in ("name", "arguments"))
    return out


def compression(texts: list[str]) -> tuple[Compression, ...]:
    """Characters, UTF-8 bytes and tokens of ``texts`` under each bundled encoding."""
    chars = sum(len(t) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    out = []
    for name in sorted(ENCODINGS):
        enc = get_encoding(name)
        tokens = sum(len(x) for x in enc.encode_ordinary_batch(texts)) if texts else 0
        out.append(Compression(name, chars, nbytes, tokens))
    return tuple(out)


def _money(d: Decimal) -> str:
    return "$" + format(d.normalize(), "f") if d else "$0"


def _arithmetic(est: Estimate, price: Price) -> tuple[str, ...]:
    per_1k_in = price.prompt_per_1m / 1000
    per_1k_out = price.completion_per_1m / 1000
    lines = [
        f"prompt:     {est.prompt_tokens:,} tokens x {_money(per_1k_in)}/1K = {_money(est.prompt_cost_usd)}",
        f"completion: {est.completion_tokens:,} tokens x {_money(per_1k_out)}/1K = {_money(est.completion_cost_usd)}"
        + (" (upper bound: max_tokens)" if est.completion_is_upper_bound else ""),
        f"total:      {_money(est.prompt_cost_usd)} + {_money(est.completion_cost_usd)} = {_money(est.total_cost_usd)}",
    ]
    return tuple(lines)


def explain(
    request: dict[str, Any] | list[dict[str, Any]],
    model: str | None = None,
    *,
    completion_tokens: int | None = None,
    mode: Mode | None = None,
    at: date | datetime | None = None,
    price: Price | None = None,
    image_sizes: dict[str, tuple[int, int]] | None = None,
    source: str = "",
) -> Explanation:
    body: dict[str, Any] = {"messages": request} if isinstance(request, list) else dict(request)
    est, count = estimate_with_count(body, model, completion_tokens=completion_tokens, mode=mode, at=at,
                                     price=price, image_sizes=image_sizes, source=source)
    return Explanation(
        count=count,
        estimate=est,
        price=est.price,
        arithmetic=_arithmetic(est, est.price),
        compression=compression(_texts(body)),
    )
