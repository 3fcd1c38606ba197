"""The response half of the proxy: upstream's bytes to the client as they arrive, then one ledger row.

:class:`Relay` is an ASGI response. It watches the client connection while it streams, because
uvicorn silently drops writes to a client that has gone (ASGI spec 2.3): without the watcher a
disconnected client would go unnoticed until upstream finished a stream nobody reads any more. However the exchange ends — complete, client gone, upstream cut — exactly
one row is queued, after the upstream connection is released.

If upstream breaks after the status line went out, the client connection is aborted (not ended
cleanly) so the client sees the same truncated response it would have seen talking to upstream
directly, rather than a stream that merely looks short.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from ._proxy_sse import SSETap
from .proxy import _exc_error_type, hop_by_hop

__all__ = ["Relay", "UpstreamBroke"]

# Keep at most this much of a non-streamed billed body for parsing; beyond it, only the tail
# (where the API puts "usage") is kept. Embedding responses for big batches can be this large.
_MAX_BODY = 64 * 1024 * 1024
_TAIL = 1024 * 1024


class UpstreamBroke(Exception):
    """Raised to make the ASGI server abort the client connection; not an error of ours."""


class _QuietUpstreamBroke(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, UpstreamBroke)


# uvicorn logs any exception escaping the app with a traceback; ours is deliberate, and already
# logged as a failed call in the ledger.
logging.getLogger("uvicorn.error").addFilter(_QuietUpstreamBroke())


class Relay:
    __slots__ = ("upstream", "call", "config", "sink", "tap", "parts", "size", "truncated",
                 "finished", "client_gone", "upstream_error")

    def __init__(self, upstream: httpx.Response, call: Any, config: Any, sink: Any, hide_usage: bool) -> None:
        self.upstream = upstream
        self.call = call  # proxy._Call, or None for requests we only forward
        if call is not None:
            call.request_id = upstream.headers.get("x-request-id")
        self.config = config
        self.sink = sink
        sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
        self.tap = SSETap(hide_usage_chunk=hide_usage) if call is not None and sse else None
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.finished = False
        self.client_gone = False
        self.upstream_error: BaseException | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        hiding = self.tap is not None and self.tap.hide_usage_chunk
        drop = hop_by_hop(self.upstream.headers.raw)
        headers = [
            (k, v) for k, v in self.upstream.headers.raw
            if (lk := k.lower()) not in drop and not (hiding and lk == b"content-length")
        ]
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                try:
                    await self._pump(send, headers)
                except httpx.HTTPError as exc:  # cut, reset or timed out mid-body
                    self.upstream_error = exc
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            if self.call is not None:
                self._record()
        if self.upstream_error is not None:
            raise UpstreamBroke(str(self.upstream_error)) from self.upstream_error

    async def _watch(self, receive: Any, cancel_scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.finished:  # after our last byte, uvicorn reports the end as a disconnect
                    self.client_gone = True
                    # A stream is cut at once: upstream stops generating, and billing, when we hang
                    # up. A non-streamed completion is generated (and billed) whole anyway, so we
                    # read it to the end — no longer writing to the gone client — and log the
                    # usage the API reports instead of an estimate.
                    if self.call is None or self.tap is not None:
                        cancel_scope.cancel()
                return

    async def _pump(self, send: Any, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": self.upstream.status_code, "headers": headers})
        tap = self.tap
        keep = self.call is not None and tap is None
        async for chunk in self.upstream.aiter_raw():
            if tap is not None:
                out = tap.feed(chunk)
            else:
                out = chunk
                if keep:
                    self._keep(chunk)
            if out and not self.client_gone:
                await send({"type": "http.response.body", "body": out, "more_body": True})
                # Yield to the event loop after every write. Chunks upstream sent together are
                # handed to us without a yield, and a send to a client that hung up only closes the
                # transport: uvicorn learns of it (and stops writing) in a callback the loop runs
                # next. Without this, the rest of such a burst is written into the closed
                # transport, and asyncio prints "socket.send() raised exception." from the 5th write.
                await anyio.lowlevel.checkpoint()
        tail = tap.finish() if tap is not None else b""
        self.finished = True
        if not self.client_gone:
            await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _keep(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.parts.append(chunk)
        if self.size > _MAX_BODY:
            tail = b"".join(self.parts)[-_TAIL:]
            self.parts, self.size, self.truncated = [tail], len(tail), True

    # -- the ledger row ---------------------------------------------------------------------------

    def _record(self) -> None:
        try:
            fields = self._fields()
        except Exception:  # a row with what we know beats no row
            logging.getLogger("tokencost.proxy").exception("tokencost proxy: odd response, logging it as is")
            fields = self.call.fields(self.config, response=None, status=self.upstream.status_code,
                                      error_type=None)
        self.sink.submit(fields)

    def _fields(self) -> dict[str, Any]:
        call, status = self.call, self.upstream.status_code
        if self.upstream_error is not None:
            error_type = _exc_error_type(self.upstream_error)
        else:
            error_type = _status_error(status)
        if status >= 400:
            return call.fields(self.config, response=None, status=status, error_type=error_type)
        if self.upstream_error is not None and self.tap is None:
            # A body cut short never reaches the caller as a response: the SDK raises, and the
            # wrapper logs it as failed with no status. Same row here.
            return call.fields(self.config, response=None, status=None, error_type=error_type)
        if self.tap is not None:
            call.streamed = True
            response, text = self._stream_response()
            return call.fields(self.config, response=response, status=status, error_type=error_type, text=text)
        response = None
        if self.finished:
            body = b"".join(self.parts)
            if self.truncated:
                response = _usage_from_tail(body)
            else:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                response = parsed if isinstance(parsed, dict) else None
        return call.fields(self.config, response=response, status=status, error_type=error_type)

    def _stream_response(self) -> tuple[dict[str, Any], str | None]:
        """A response body in the API's shape built from the stream, as the wrapper builds it.

        Usage the API sent is what it billed, even if the stream broke afterwards; without it the
        row is estimated from the text that went through.
        """
        tap, endpoint = self.tap, self.call.endpoint
        assert tap is not None
        exact = tap.usage_seen
        if exact and not self.config.store_content:
            if endpoint == "responses" and tap.final_response is not None:
                return tap.final_response, None
            return tap.usage_chunk or {}, None
        acc = tap.accumulate()
        if endpoint == "responses" and tap.final_response is not None:
            body = dict(tap.final_response)
        else:
            body = {"id": acc.id, "model": acc.model,
                    "usage": tap.usage_chunk.get("usage") if tap.usage_chunk else None,
                    "object": {"chat.completions": "chat.completion", "completions": "text_completion"}
                    .get(endpoint, "response")}
        if not exact:
            body["usage"] = None
        return body, acc.text


def _status_error(status: int) -> str | None:
    """The class name the official SDKs raise for ``status``, so proxy rows match wrapper rows."""
    if status < 400:
        return None
    return {
        400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
        404: "NotFoundError", 409: "ConflictError", 422: "UnprocessableEntityError", 429: "RateLimitError",
    }.get(status, "InternalServerError" if status >= 500 else "APIStatusError")


def _usage_from_tail(tail: bytes) -> dict[str, Any] | None:
    """``{"usage": ...}`` from the end of a body too big to keep whole."""
    match = re.search(rb'"usage"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})', tail)
    if match is None:
        return None
    try:
        return {"usage": json.loads(match.group(1))}
    except ValueError:
        return None
