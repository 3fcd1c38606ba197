"""Per-call tags for the ledger: ``with tokencost.tags(user="u42", feature="search"): ...``.

Tags live in a :mod:`contextvars` variable, so they follow the code that makes the call: each
thread starts with none, and each asyncio task sees the tags that were active when it was created.
Nested blocks merge, the inner value winning for a repeated key. ``tags`` also works as a
decorator (``@tokencost.tags(feature="summarize")``).

Tags are read once, when a tracked call starts — so a stream consumed outside the ``with`` block is
still filed under the tags it was created with. They are never sent to the API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["tags", "current_tags"]

_EMPTY: Mapping[str, str] = {}
_TAGS: ContextVar[Mapping[str, str]] = ContextVar("tokencost_tags", default=_EMPTY)


def _clean(values: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"tag names must be non-empty strings, got {key!r}")
        if value is None:
            continue  # lets callers write tags(user=maybe_user) without an if
        out[key] = value if isinstance(value, str) else str(value)
    return out


@contextmanager
def tags(**values: object) -> Iterator[dict[str, str]]:
    """Attach ``values`` (``None`` values are skipped) to every tracked call made inside the block.

    Yields the merged tags in force inside the block.
    """
    merged = {**_TAGS.get(), **_clean(values)}
    token = _TAGS.set(merged)
    try:
        yield dict(merged)
    finally:
        _TAGS.reset(token)


def current_tags() -> dict[str, str]:
    """The tags that a tracked call made here and now would be filed under (a copy)."""
    return dict(_TAGS.get())
