"""Server-sent events seen by the proxy: forward them, hide the usage chunk we asked for, keep usage.

The proxy must hand the client upstream's bytes as they arrive, except one event: the usage-only
chunk (``"choices": []`` plus ``usage``) that exists only because the proxy added
``stream_options.include_usage``. :class:`SSETap` splits the byte stream on event boundaries
(a blank line, ``\\n\\n`` or ``\\r\\n\\r\\n``), decides per complete event, and remembers what the
ledger needs.

Parsing is lazy because it is on the hot path: per event we only run a byte regex; JSON is decoded
for the few events that carry usage or end a Responses stream, and — only when a stream ends
without usage (cut, abandoned) or its text is to be stored — for all of them, through the
:class:`tokencost.usage.StreamAccumulator` the wrapper's rows come from.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .usage import StreamAccumulator

__all__ = ["SSETap", "split_events"]

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_RESPONSE_END = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete events (each with its terminating blank line, bytes untouched) and the remainder."""
    events: list[bytes] = []
    start = 0
    for match in _BOUNDARY.finditer(buffer):
        events.append(buffer[start : match.end()])
        start = match.end()
    return events, buffer[start:]


def _event_data(event: bytes) -> Any:
    """The JSON value of an event's ``data:`` lines, or None (comments, ``[DONE]``, bad JSON)."""
    lines = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    if not lines:
        return None
    data = b"\n".join(lines)
    if data.strip() == b"[DONE]":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


class SSETap:
    """Feed it upstream's chunks; it returns what to forward and collects what to log.

    ``hide_usage_chunk``: drop the usage-only chat/completions chunk from what is forwarded (we
    added ``include_usage``, the client did not ask for it). Without it, every chunk is forwarded
    as is, the moment it arrives.
    """

    def __init__(self, *, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self._tail = b""
        self._events: list[bytes] = []
        self.usage_chunk: dict[str, Any] | None = None  # chat/completions: the chunk carrying usage
        self.final_response: dict[str, Any] | None = None  # responses: the response.completed object
        self.hidden_events = 0

    def feed(self, chunk: bytes) -> bytes:
        events, self._tail = split_events(self._tail + chunk)
        if not self.hide_usage_chunk:
            for event in events:
                self._inspect(event)
            return chunk
        keep = []
        for event in events:
            if self._inspect(event):
                self.hidden_events += 1
            else:
                keep.append(event)
        return b"".join(keep)

    def finish(self) -> bytes:
        """Upstream ended: whatever incomplete event is left (forwarded untouched if we held it)."""
        tail, self._tail = self._tail, b""
        if tail.strip():
            self._events.append(tail)
        return tail if self.hide_usage_chunk else b""

    def _inspect(self, event: bytes) -> bool:
        """Remember the event; True if it is the usage-only chunk to hide."""
        self._events.append(event)
        has_usage = _USAGE.search(event) is not None
        if not has_usage and _RESPONSE_END.search(event) is None:
            return False
        data = _event_data(event)
        if not isinstance(data, dict):
            return False
        kind = data.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            if isinstance(data.get("response"), dict) and _RESPONSE_END.search(event) is not None:
                self.final_response = data["response"]
            return False
        if has_usage and isinstance(data.get("usage"), dict):
            self.usage_chunk = data
            return self.hide_usage_chunk and data.get("choices") == []
        return False

    # -- what the ledger needs once the stream is over ------------------------------------------

    @property
    def usage_seen(self) -> bool:
        """The API reported usage (what it billed, whatever happened to the stream afterwards)."""
        if self.final_response is not None and isinstance(self.final_response.get("usage"), dict):
            return True
        return self.usage_chunk is not None

    def accumulate(self) -> StreamAccumulator:
        """Every event replayed through the accumulator the wrapper's rows use (text, model, id)."""
        acc = StreamAccumulator()
        for event in self._events:
            data = _event_data(event)
            if isinstance(data, dict):
                acc.feed(data)
        return acc
