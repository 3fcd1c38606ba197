"""Token counts of texts seen before, for counting the same conversation again and again.

A chatbot sends its whole history on every turn, so the wrapper and the proxy would otherwise
re-encode every earlier message on every call; with this only the new message is encoded.
Counts are keyed by (encoding, text): a text has one token count per encoding, so a hit is
exactly what encoding it again would give (a test checks it on the verified cases).

Bounded by characters held, not by entries: one huge document must not pin memory. When full,
it is emptied and refilled (the next turns put the live conversation back at once). Plain dict
operations only, so threads can share it under the GIL; the character tally may drift by a
text under a race, which only moves the moment the memo is emptied.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["lengths", "seen", "clear", "MAX_CHARS", "MAX_TEXT"]

MAX_CHARS = 4_000_000  # characters held across encodings: ~10-20 MB of str objects at most
MAX_TEXT = 200_000  # longer texts are encoded every time (rarely repeated, costly to hold)

_counts: dict[str, dict[str, int]] = {}
_held = 0


def lengths(encoding: str, texts: list[str], encode: Callable[[list[str]], list[int]]) -> list[int]:
    """Token counts of ``texts`` in ``encoding``; ``encode`` is called once, on the misses only."""
    global _held
    memo = _counts.get(encoding)
    if memo is None:
        memo = _counts.setdefault(encoding, {})
    out: list[Any] = [memo.get(t) for t in texts]
    missing = [i for i, n in enumerate(out) if n is None]
    if not missing:
        return out
    fresh = encode([texts[i] for i in missing])
    added = 0
    for i, n in zip(missing, fresh):
        out[i] = n
        t = texts[i]
        if len(t) <= MAX_TEXT:
            memo[t] = n
            added += len(t)
    _held += added
    if _held > MAX_CHARS:
        clear()
    return out


def seen(text: str) -> bool:
    """Whether ``text`` is remembered in any encoding (so counting it again costs a lookup)."""
    for memo in tuple(_counts.values()):  # another thread may add an encoding meanwhile
        if text in memo:
            return True
    return False


def clear() -> None:
    global _held
    for memo in list(_counts.values()):
        memo.clear()
    _held = 0
