"""tokencost: exact, offline token counts and costs for OpenAI calls — before, during and after.

The public API is the table below; each name is imported from its module on first use, so
``import tokencost`` (and every CLI command) loads only what it needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    "BudgetExceeded": "errors", "EncodingUnavailable": "errors", "InputError": "errors", "LedgerError": "errors",
    "TokencostError": "errors", "UnknownModel": "errors", "UnpricedModel": "errors", "UsageError": "errors",
    "PromptCount": "counting", "count_prompt": "counting", "count_prompt_tokens": "counting",
    "count_prompts": "counting", "count_text_tokens": "counting",
    "Estimate": "estimation", "estimate": "estimation",
    "Explanation": "explanation", "explain": "explanation",
    "ModelInfo": "models", "resolve_model": "models",
    "Cost": "pricing", "Price": "pricing", "all_prices": "pricing", "custom_price": "pricing", "price_for": "pricing",
    "tags": "wrap", "track": "wrap",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tokencost' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .counting import PromptCount, count_prompt, count_prompt_tokens, count_prompts, count_text_tokens
    from .errors import (BudgetExceeded, EncodingUnavailable, InputError, LedgerError, TokencostError,
                         UnknownModel, UnpricedModel, UsageError)
    from .estimation import Estimate, estimate
    from .explanation import Explanation, explain
    from .models import ModelInfo, resolve_model
    from .pricing import Cost, Price, all_prices, custom_price, price_for
    from .wrap import tags, track
