"""The one exception tree of tokencost.

::

    TokencostError                 exit code 1: something the user can fix, but not a usage slip
    ├── UsageError                 exit code 2: bad arguments or bad input files
    │   ├── InputError             a file or request we cannot read (says file, line, message index)
    │   └── UnknownModel           a model name we do not know (says the closest names)
    ├── UnpricedModel              a known or unknown model with no price row (never priced at $0)
    ├── EncodingUnavailable        a tokenizer file missing or failing its sha256 check
    ├── LedgerError                the SQLite ledger cannot be opened or read
    └── BudgetExceeded             a call refused because a budget would be exceeded

The CLI translates every ``TokencostError`` into ``Error: <message>`` on stderr and its
``exit_code``; nothing else in the library prints.
"""

from __future__ import annotations

__all__ = [
    "TokencostError",
    "UsageError",
    "InputError",
    "UnknownModel",
    "UnpricedModel",
    "EncodingUnavailable",
    "LedgerError",
    "BudgetExceeded",
]


class TokencostError(Exception):
    """Base of every error tokencost raises on purpose."""

    exit_code: int = 1


class UsageError(TokencostError):
    exit_code = 2


class InputError(UsageError):
    """Bad input. ``where`` is e.g. ``conversation.json:3:14`` or ``requests.jsonl line 7, message 2``."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UnknownModel(UsageError):
    def __init__(self, model: str, suggestions: list[str] | tuple[str, ...] = ()) -> None:
        self.model = model
        self.suggestions = list(suggestions)
        hint = f" — did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ";"
        super().__init__(
            f"unknown model {model!r}{hint} `tokencost prices` lists the known models; "
            "--price-in/--price-out prices any model"
        )


class UnpricedModel(TokencostError):
    def __init__(self, model: str, at: object | None = None, detail: str = "") -> None:
        self.model = model
        self.at = at
        when = f" on {at}" if at is not None else ""
        super().__init__(
            f"no price for model {model!r}{when}{detail}; add it to your prices file "
            "(`tokencost prices --help`) or pass --price-in/--price-out"
        )


class EncodingUnavailable(TokencostError):
    pass


class LedgerError(TokencostError):
    pass


class BudgetExceeded(TokencostError):
    def __init__(self, message: str, *, budget: str | None = None) -> None:
        self.budget = budget
        super().__init__(message)
