"""Watching streamed and lazily read responses on their way to the caller, for :mod:`tokencost.wrap`.

The caller keeps the very ``Stream``/``AsyncStream`` object the SDK built; only its private
``_iterator`` is swapped for a generator that looks at each item before handing it on. That keeps
``type(stream)``, ``stream.response``, ``with stream:`` and the SDK's own ``.stream()`` helpers
(which iterate the raw stream) working unchanged.

Every way a stream can end reaches :meth:`StreamLog.finish`, which records exactly once:
the last item read (complete), an exception while reading (failed midway), the generator being
closed, ``stream.close()``, or the stream object being garbage-collected or still open at exit
(abandoned; ``weakref.finalize`` covers the last two).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = ["StreamLog", "watch_stream", "watch_async_stream", "watch_lazy_response", "body_of", "header"]

# The same text-bearing Responses events tokencost.usage.StreamAccumulator counts (the proxy's
# reader), so wrapper and proxy estimate an unfinished stream alike.
_TEXT_DELTA_EVENTS = ("response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta")


class StreamLog:
    """What one stream has shown so far, and the once-only hand-off to the ledger."""

    __slots__ = ("endpoint", "hide_usage", "parts", "choices", "usage", "model", "id", "final", "_done", "_lock",
                 "_on_finish")

    def __init__(self, endpoint: str, hide_usage: bool, on_finish: Callable[[StreamLog, BaseException | None, bool], None]) -> None:
        self.endpoint = endpoint
        self.hide_usage = hide_usage
        self.parts: list[str] = []  # text seen (Responses events)
        self.choices: list[Any] = []  # each chunk's choices, read into text only when needed
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.final: dict[str, Any] | None = None  # the Responses API's completed response
        self._done = False
        self._lock = threading.Lock()
        self._on_finish = on_finish

    # --- items -------------------------------------------------------------------------------
    def see(self, item: Any) -> bool:
        """Note ``item``; return False when the caller must not see it (our own usage chunk).

        Runs once per chunk, so it only keeps references; text is extracted at the end, and only
        if the row needs it (no usage from the API, or ``store_content``)."""
        try:
            if self.endpoint == "responses":
                self._see_event(item)
                return True
            if self.model is None:
                self.model = item.model
                self.id = item.id
            choices = item.choices
            usage = item.usage
            if usage is not None:
                self.usage = usage.model_dump(warnings=False)
            if choices:
                self.choices.append(choices)
            elif usage is not None and self.hide_usage:
                return False
        except Exception:  # an odd item must never break the caller's loop
            pass
        return True

    def _see_choice(self, choice: Any) -> None:
        text = getattr(choice, "text", None)  # legacy completions
        if isinstance(text, str):
            self.parts.append(text)
            return
        delta = getattr(choice, "delta", None)
        if delta is None:
            return
        for attr in ("content", "refusal"):
            value = getattr(delta, attr, None)
            if value:
                self.parts.append(value)
        for call in getattr(delta, "tool_calls", None) or ():
            fn = getattr(call, "function", None)
            if fn is not None:
                self.parts.append((getattr(fn, "name", None) or "") + (getattr(fn, "arguments", None) or ""))
        fn = getattr(delta, "function_call", None)
        if fn is not None:
            self.parts.append((getattr(fn, "name", None) or "") + (getattr(fn, "arguments", None) or ""))

    def _see_event(self, event: Any) -> None:
        kind = getattr(event, "type", "") or ""
        if kind in _TEXT_DELTA_EVENTS:
            delta = getattr(event, "delta", None)
            if isinstance(delta, str):
                self.parts.append(delta)
            return
        response = getattr(event, "response", None)
        if response is None:
            return
        self.model = getattr(response, "model", None) or self.model
        self.id = getattr(response, "id", None) or self.id
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = response.model_dump()
            usage = getattr(response, "usage", None)
            if usage is not None:
                self.usage = usage.model_dump(warnings=False)

    # --- the end -----------------------------------------------------------------------------
    @property
    def text(self) -> str:
        if self.choices:
            for choices in self.choices:
                for choice in choices:
                    self._see_choice(choice)
            self.choices = []
        return "".join(self.parts)

    def finish(self, error: BaseException | None = None, abandoned: bool = False) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        try:
            self._on_finish(self, error, abandoned)
        except Exception:  # pragma: no cover - on_finish already guards; belt and braces at exit
            pass

    def response_body(self, with_text: bool) -> dict[str, Any]:
        """A response body in the API's own shape, built from what the stream showed (the text
        only when asked: it is needed for ``store_content`` alone)."""
        if self.final is not None:
            return self.final
        body: dict[str, Any] = {"id": self.id, "model": self.model, "usage": self.usage}
        text = self.text if with_text else ""
        if self.endpoint == "chat.completions":
            body["object"] = "chat.completion"
            body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text}}]
        elif self.endpoint == "completions":
            body["object"] = "text_completion"
            body["choices"] = [{"index": 0, "text": text}]
        else:
            body["object"] = "response"
        return body


def _abandon(log: StreamLog) -> None:
    log.finish(None, True)


def watch_stream(stream: Any, log: StreamLog) -> Any:
    """Make the SDK ``Stream`` report to ``log``; returns the same object."""
    inner: Iterator[Any] = stream._iterator

    def iterate() -> Iterator[Any]:
        try:
            for item in inner:
                if log.see(item):
                    yield item
        except GeneratorExit:
            log.finish(None, True)
            raise
        except BaseException as exc:
            log.finish(exc, False)
            raise
        else:
            log.finish(None, False)
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    sdk_close = stream.close

    def close() -> None:
        try:
            sdk_close()
        finally:
            log.finish(None, True)

    stream._iterator = iterate()
    stream.close = close
    weakref.finalize(stream, _abandon, log)
    return stream


def watch_async_stream(stream: Any, log: StreamLog) -> Any:
    """Make the SDK ``AsyncStream`` report to ``log``; returns the same object."""
    inner: AsyncIterator[Any] = stream._iterator

    async def iterate() -> AsyncIterator[Any]:
        try:
            async for item in inner:
                if log.see(item):
                    yield item
        except GeneratorExit:
            log.finish(None, True)
            raise
        except BaseException as exc:
            log.finish(exc, False)
            raise
        else:
            log.finish(None, False)
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    sdk_close = stream.close

    async def close() -> None:
        try:
            await sdk_close()
        finally:
            log.finish(None, True)

    stream._iterator = iterate()
    stream.close = close
    weakref.finalize(stream, _abandon, log)
    return stream


def header(response: Any, name: str) -> str | None:
    try:
        return response.headers.get(name)
    except Exception:
        return None


def body_of(obj: Any, endpoint: str) -> dict[str, Any] | None:
    """The response body as a dict; embeddings without the vectors (large, and not needed)."""
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None)
    if dump is None:
        return None
    if endpoint == "embeddings":
        return dump(exclude={"data"})
    return dump()


def watch_lazy_response(call: Any, response: Any, is_async: bool) -> None:
    """``with_streaming_response``: log when the caller parses the body, else when it is closed or dropped."""
    state = {"done": False}
    lock = threading.Lock()

    def once() -> bool:
        with lock:
            if state["done"]:
                return False
            state["done"] = True
            return True

    def settle(parsed: Any) -> Any:
        from openai import AsyncStream, Stream

        if isinstance(parsed, (Stream, AsyncStream)):
            if once():
                call.watch(parsed, request_id=response.request_id)
        elif once():
            call.write(response=body_of(parsed, call.endpoint), status=response.status_code,
                       request_id=response.request_id)
        return parsed

    def unread(http: Any) -> None:
        if once():
            body = None
            try:
                if getattr(http, "_content", None) is not None:  # the caller read the raw body
                    body = http.json()
            except Exception:
                body = None
            call.write(response=body if isinstance(body, dict) else None, status=http.status_code,
                       request_id=header(http, "x-request-id"))

    sdk_parse, sdk_close, http = response.parse, response.close, response.http_response
    if is_async:

        async def parse(*args: Any, **kwargs: Any) -> Any:
            return settle(await sdk_parse(*args, **kwargs))

        async def close() -> None:
            try:
                await sdk_close()
            finally:
                unread(http)

    else:

        def parse(*args: Any, **kwargs: Any) -> Any:
            return settle(sdk_parse(*args, **kwargs))

        def close() -> None:
            try:
                sdk_close()
            finally:
                unread(http)

    response.parse = parse
    response.close = close
    weakref.finalize(response, unread, http)
