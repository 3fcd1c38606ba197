"""tokencost: exact, offline token counts and costs for OpenAI calls — before, during and after."""

from .counting import PromptCount, count_prompt, count_prompt_tokens, count_prompts, count_text_tokens
from .errors import (
    BudgetExceeded, EncodingUnavailable, InputError, LedgerError, TokencostError, UnknownModel, UnpricedModel,
    UsageError,
)
from .estimate import Estimate, estimate
from .explain import Explanation, explain
from .models import ModelInfo, resolve_model
from .pricing import Cost, Price, all_prices, custom_price, price_for
from .wrap import tags, track

__version__ = "0.1.0"
__all__ = [
    "BudgetExceeded", "Cost", "EncodingUnavailable", "Estimate", "Explanation", "InputError", "LedgerError",
    "ModelInfo", "Price", "PromptCount", "TokencostError", "UnknownModel", "UnpricedModel", "UsageError",
    "all_prices", "count_prompt", "count_prompt_tokens", "count_prompts", "count_text_tokens", "custom_price",
    "estimate", "explain", "price_for", "resolve_model", "tags", "track",
]
