"""The pre-call prompt-token estimate of a tracked call (issue 3: "before each call, our own
prompt-token estimate is recorded next to the API's number").

Where it is counted is a measured choice (bench/bench_wrap.py, ``helper-estimate``): waking a
helper thread and sharing the GIL with it costs more than encoding a short prompt, so a prompt
with little text not counted before is counted on the calling thread when the row is written;
a bigger one goes to the helper while the request is on the wire. A budget needs the number
before sending, so then it is counted at once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from . import _memo

__all__ = ["Estimate", "wants_helper", "INLINE_CHARS"]


class Estimate:
    """Our prompt-token count for one call, computed once: by whoever takes the lock first — the
    helper thread (if :meth:`in_background` was called), or the call's own thread in
    :meth:`result` — so a busy helper never delays a row. One plain lock per call (an Event
    would build a Condition: several times the cost, on every call)."""

    __slots__ = ("endpoint", "body", "value", "_done", "_lock")

    def __init__(self, endpoint: str, body: dict[str, Any]) -> None:
        self.endpoint, self.body = endpoint, body
        self.value: int | None = None
        self._done = False
        self._lock = threading.Lock()

    def run(self) -> None:
        """On the helper: count unless the call's thread is at it (then it needs no help)."""
        if self._lock.acquire(blocking=False):
            self._count_locked()

    def result(self) -> int | None:
        if not self._done:
            if not self._lock.acquire(timeout=10.0):  # the helper is counting right now
                return self.value
            self._count_locked()
        return self.value

    def _count_locked(self) -> None:
        try:
            if not self._done:
                self.value = _estimate_prompt_tokens(self.endpoint, self.body)
                self._done = True
        finally:
            self._lock.release()

    def in_background(self) -> None:
        _helper().put(self)


# Up to this much text not counted before (~130 us of encoding), the estimate is made on the
# calling thread; more goes to the helper thread while the request is on the wire. Waking the helper and sharing the GIL with it measured 150-300 us per call on 2 CPUs
# (bench/RESULTS.md), so a small prompt is cheaper to count in place.
INLINE_CHARS = 2_000
_SHORT = 32  # strings this short (roles, ids, names) cost next to nothing to encode
_MESSAGE_KEYS = ("messages", "input", "prompt", "instructions")
_TOOL_KEYS = ("tools", "functions")
_MAX_NODES = 5_000  # values walked at most; past that the request goes to the helper thread


def wants_helper(body: dict[str, Any]) -> bool:
    """Whether this request has enough new prompt text to be counted on the helper thread."""
    return new_text_chars(body) > INLINE_CHARS


def new_text_chars(body: dict[str, Any]) -> int:
    """Characters of prompt text not counted before (stops counting past the limit)."""
    stack: list[Any] = [body.get(k) for k in _MESSAGE_KEYS[1:]]
    total = 0
    messages = body.get("messages")
    if type(messages) is list:
        if len(messages) > _MAX_NODES:  # a huge history: count it on the helper
            return INLINE_CHARS + 1
        seen = _memo.seen
        for m in messages:  # the common {"role", "content": str} message, without a generic walk
            content = m.get("content") if type(m) is dict and len(m) == 2 else None
            if type(content) is str:
                if len(content) > _SHORT and not seen(content):
                    total += len(content)
            else:
                stack.append(m)
        if total > INLINE_CHARS:
            return total
    else:
        stack.append(messages)
    total = _walk(stack, _memo.seen, total)
    if total <= INLINE_CHARS:
        # Tool schemas are counted as one rendered text, so their strings are never in the memo
        # one by one; a string we have walked in a tool schema before counts as seen.
        # Walked to the end (not stopping at the limit), so that every string of a big schema is
        # marked seen on its first call, not a limit's worth per call.
        total = _walk([body.get(k) for k in _TOOL_KEYS], _tool_string_seen, total, stop_early=False)
    return total


def _walk(stack: list[Any], seen: Any, total: int, *, stop_early: bool = True) -> int:
    visited = 0
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is str:
            if len(value) > _SHORT and not seen(value):
                total += len(value)
                if stop_early and total > INLINE_CHARS:
                    return total
        elif kind is list or kind is tuple:
            stack.extend(value)
        elif kind is dict:
            stack.extend(value.values())
        visited += 1
        if visited > _MAX_NODES:  # a huge structure: count it on the helper
            return INLINE_CHARS + 1
    return total


_TOOL_STRINGS: set[str] = set()


def _tool_string_seen(text: str) -> bool:
    if text in _TOOL_STRINGS:
        return True
    if len(_TOOL_STRINGS) >= 4_096:
        _TOOL_STRINGS.clear()
    _TOOL_STRINGS.add(text)
    return False


_HELPER: tuple[int, Any] | None = None
_HELPER_LOCK = threading.Lock()


def _helper() -> Any:
    """The queue of the one helper thread of this process (started on first use, again after fork)."""
    global _HELPER
    pid = os.getpid()
    if _HELPER is not None and _HELPER[0] == pid:
        return _HELPER[1]
    with _HELPER_LOCK:
        if _HELPER is not None and _HELPER[0] == pid:
            return _HELPER[1]
        import queue

        q: Any = queue.SimpleQueue()

        def loop() -> None:
            while True:
                job = q.get()
                try:
                    job.run()
                except BaseException:  # pragma: no cover - run() never raises; keep the helper alive
                    pass

        threading.Thread(target=loop, name="tokencost-estimate", daemon=True).start()
        _HELPER = (pid, q)
        return q


def _estimate_prompt_tokens(endpoint: str, body: dict[str, Any]) -> int | None:
    """Our own prompt-token count, taken before the call (the proxy uses the same function)."""
    try:
        from .record import estimate_prompt_tokens

        model = body.get("model")
        return estimate_prompt_tokens(endpoint, body, model if isinstance(model, str) else None)
    except Exception:  # a counting bug must not stop the call: the row gets NULL
        return None
