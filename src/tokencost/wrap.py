"""``tokencost.track(client)``: log every real call an ``openai`` client makes to the ledger.

How it hooks in: the SDK sends every request through ``client.request(cast_to, options, ...)``
(``client.post`` calls ``self.request``). ``track`` sets an instance attribute ``request`` on *that
client object only* — nothing in the ``openai`` module is patched — so every way of calling the
four logged endpoints goes through it: ``create``, ``parse``, ``.stream()`` helpers,
``with_raw_response`` and ``with_streaming_response``, sync and async. ``client.with_options(...)``
and ``client.copy(...)`` return tracked copies writing to the same ledger.

What the caller gets is exactly what the SDK returned (the same object, the same type) and any
exception is re-raised as the same object. SDK-internal retries (``max_retries``) happen inside
the hooked call, so a call retried after a 429 and then answered is one row with status 200.

Streaming: for chat/legacy completions without ``stream_options.include_usage`` we ask for usage
and drop the extra usage-only chunk (empty ``choices``) before the caller sees it; if the caller
asked for usage it is passed through. See :mod:`tokencost._wrapstream` for abandoned streams.

Tags: ``track(client, tags={"app": "search"})`` tags every call of that client, and
``with tokencost.tags(user="u42", feature="rerank"): ...`` (or ``@tokencost.tags(...)`` on a
function) tags the calls made inside, per thread and per asyncio task. Nothing extra is sent to
the API: there is deliberately no per-call keyword, so ``create()`` keeps the SDK's own signature.

Rows are written synchronously, on the calling thread, before the call returns (or before the
stream's last item is handed over): a ``kill -9`` after a call returned cannot lose its row. The
measured cost of that choice is in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from ._precall import Estimate, wants_helper
from ._wrapstream import StreamLog, body_of, header, watch_async_stream, watch_lazy_response, watch_stream
from .errors import BudgetExceeded
from .tagging import current_tags, tags
from .usage import check_usage

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["track", "tags", "SUPPORTED_OPENAI"]

SUPPORTED_OPENAI = ">=1.66,<4"
"""The ``openai`` releases ``track`` is tested with: 1.66.5 (the first with the Responses API),
1.109.1, 2.8.0 and 3.57.0. It relies on ``client.request``/``client.copy`` and ``Stream._iterator``,
which every release in that range has."""

_ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/responses": "responses",
    "/completions": "completions",
    "/embeddings": "embeddings",
}
_USAGE_CHUNK_ENDPOINTS = ("chat.completions", "completions")
_ATTR = "_tokencost_tracker"

ClientT = TypeVar("ClientT")


def track(client: ClientT, *, db: Any = None, tags: dict[str, str] | None = None, store_content: bool = False) -> ClientT:
    """Log every chat, responses, completions and embeddings call ``client`` makes; return ``client``.

    ``db`` is the ledger path (default: ``$TOKENCOST_DB`` or the user data dir). ``tags`` are
    attached to every call of this client; ``with tokencost.tags(...)`` adds per-call tags.
    Prompt and completion text are stored only with ``store_content=True``. Tracking an already
    tracked client replaces its settings.
    """
    try:
        from openai import AsyncOpenAI, OpenAI
    except ImportError as exc:  # pragma: no cover - openai is a dependency
        raise TypeError("tokencost.track needs the openai package") from exc
    if not isinstance(client, (OpenAI, AsyncOpenAI)):
        raise TypeError(f"tokencost.track expects an openai.OpenAI or openai.AsyncOpenAI client, got {type(client).__name__}")
    _instrument(client, _Tracker(db, dict(tags or {}), store_content))
    return client


def _instrument(client: Any, tracker: _Tracker) -> None:
    already = _ATTR in vars(client)
    setattr(client, _ATTR, tracker)
    if already:
        return
    # chain to whatever is there now (the SDK's method, or another library's instance hook)
    sdk_request = client.request
    sdk_copy = client.copy

    if inspect.iscoroutinefunction(sdk_request):

        async def request(cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
            endpoint = _ENDPOINTS.get(options.url) if options.method == "post" else None
            if endpoint is None:
                return await sdk_request(cast_to, options, *args, **kwargs)
            call = _start(getattr(client, _ATTR), endpoint, options, kwargs.get("stream", False))
            if call is None:
                return await sdk_request(cast_to, options, *args, **kwargs)
            try:
                result = await sdk_request(cast_to, call.options, *args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return call.returned(result, is_async=True)

    else:

        def request(cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
            endpoint = _ENDPOINTS.get(options.url) if options.method == "post" else None
            if endpoint is None:
                return sdk_request(cast_to, options, *args, **kwargs)
            call = _start(getattr(client, _ATTR), endpoint, options, kwargs.get("stream", False))
            if call is None:
                return sdk_request(cast_to, options, *args, **kwargs)
            try:
                result = sdk_request(cast_to, call.options, *args, **kwargs)
            except BaseException as exc:
                call.failed(exc)
                raise
            return call.returned(result, is_async=False)

    def copy(*args: Any, **kwargs: Any) -> Any:
        new = sdk_copy(*args, **kwargs)
        _instrument(new, getattr(client, _ATTR))
        return new

    client.request = request
    client.copy = copy
    client.with_options = copy


def _start(tracker: _Tracker, endpoint: str, options: Any, stream: Any) -> _Call | None:
    """The call's bookkeeping, or None (call sent untracked, one warning) if setting it up failed.
    Only a budget's refusal stops the call."""
    try:
        return _Call(tracker, endpoint, options, bool(stream))
    except BudgetExceeded:
        raise
    except Exception as exc:
        tracker.warn_once("could not track a call (sent untracked)", exc)
        return None


class _Tracker:
    """Settings of one ``track()`` and the ledger it writes to (opened on first use)."""

    def __init__(self, db: Any, tags: dict[str, str], store_content: bool) -> None:
        self.db = db
        self.tags = tags
        self.store_content = store_content
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()
        self._warned = False
        # A stream abandoned at exit is logged from an atexit finalizer. If that is the ledger's first
        # open, it imports sqlite-utils (and pandas), which imports concurrent.futures, whose import
        # registers an atexit hook and fails once shutdown has begun. Importing it now keeps that row.
        import concurrent.futures.thread  # noqa: F401

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            with self._lock:
                if self._ledger is None:
                    from .ledger import Ledger

                    self._ledger = Ledger(self.db)
        return self._ledger

    def budgets_possible(self) -> bool:
        """Whether the ledger holds budgets. Shares budgets.py's own cache (re-read at most once a
        second, cleared by ``set_budget``), so asking costs a dict lookup."""
        try:
            from .budgets import has_budgets

            return has_budgets(self.ledger.path)  # no ledger file: no budgets, and it is not created
        except Exception:
            return True  # cannot tell: let check_budgets look (it warns if it cannot read them)

    def warn_once(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"tokencost: {what}: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=4)


class _Call:
    """One logged API call: what was asked, and writing its row once the outcome is known."""

    __slots__ = ("tracker", "endpoint", "options", "body", "stream", "hide_usage", "tags", "started_at", "t0", "estimate")

    def __init__(self, tracker: _Tracker, endpoint: str, options: Any, stream: bool) -> None:
        self.started_at = datetime.now(timezone.utc)
        self.t0 = time.perf_counter()
        self.tracker = tracker
        self.endpoint = endpoint
        self.stream = bool(stream)
        self.tags = {**tracker.tags, **current_tags()}
        body = options.json_data if isinstance(options.json_data, dict) else {}
        if isinstance(options.extra_json, dict):
            body = {**body, **options.extra_json}
        self.body = body
        self.hide_usage = False
        if self.stream and endpoint in _USAGE_CHUNK_ENDPOINTS:
            asked = body.get("stream_options")
            if not (isinstance(asked, dict) and asked.get("include_usage")):
                options = _with_usage_requested(options)
                self.hide_usage = True
        self.options = options
        self.estimate = Estimate(endpoint, body)
        if tracker.budgets_possible():
            # a budget needs the estimate before the request goes out
            _check_budgets(tracker, body.get("model"), self.estimate.result(), self.tags)
        elif wants_helper(body):
            self.estimate.in_background()  # counted while the request is on the wire
        # else: counted on this thread when the row is written, which costs less than waking a helper

    # --- outcomes ----------------------------------------------------------------------------
    def failed(self, exc: BaseException) -> None:
        status = getattr(exc, "status_code", None)
        self.write(response=None, status=status if isinstance(status, int) else None,
                   error_type=type(exc).__name__, request_id=getattr(exc, "request_id", None))

    def returned(self, result: Any, *, is_async: bool) -> Any:
        try:
            return self._returned(result, is_async)
        except Exception as exc:  # never let bookkeeping change what the caller gets
            self.tracker.warn_once("could not log a call", exc)
            return result

    def _returned(self, result: Any, is_async: bool) -> Any:
        streams, legacy, lazy = _sdk_types()
        if isinstance(result, streams):
            return self.watch(result, request_id=header(result.response, "x-request-id"))
        if isinstance(result, legacy):  # with_raw_response: body already read
            parsed = result.parse()  # cached by the SDK: the caller's parse() gets this same object
            if isinstance(parsed, streams):
                self.watch(parsed, request_id=result.request_id)
            else:
                self.write(response=body_of(parsed, self.endpoint), status=result.status_code,
                           request_id=result.request_id)
            return result
        if isinstance(result, lazy):  # with_streaming_response: body unread
            watch_lazy_response(self, result, is_async)
            return result
        self.write(response=body_of(result, self.endpoint), status=200,
                   request_id=getattr(result, "_request_id", None))
        return result

    def watch(self, stream: Any, *, request_id: str | None) -> Any:
        from openai import AsyncStream

        def on_finish(log: StreamLog, error: BaseException | None, abandoned: bool) -> None:
            # usage the API sent is what it billed, whatever came after — if it is valid usage at all
            exact = log.usage is not None and check_usage({"usage": log.usage})[0] is not None
            self.write(response=log.response_body(with_text=self.tracker.store_content), status=200,
                       error_type=None if error is None else type(error).__name__,
                       request_id=request_id, completion_text=None if exact else log.text)

        log = StreamLog(self.endpoint, self.hide_usage, on_finish)
        if isinstance(stream, AsyncStream):
            return watch_async_stream(stream, log)
        return watch_stream(stream, log)

    def write(self, *, response: dict[str, Any] | None, status: int | None, error_type: str | None = None,
              request_id: str | None = None, completion_text: str | None = None) -> None:
        """Build the row and hand it to the ledger; never raises."""
        try:
            self._write(response, status, error_type, request_id, completion_text)
        except Exception as exc:  # e.g. the ledger path cannot even be worked out
            self.tracker.warn_once("could not log a call", exc)

    def _write(self, response: dict[str, Any] | None, status: int | None, error_type: str | None,
               request_id: str | None, completion_text: str | None) -> None:
        latency_ms = (time.perf_counter() - self.t0) * 1000.0
        tracker = self.tracker
        from .record import build_record

        try:
            rec = build_record(
                endpoint=self.endpoint, request=self.body, response=response, status=status,
                error_type=error_type, started_at=self.started_at, latency_ms=latency_ms,
                streamed=self.stream, tags=self.tags, via="wrap", store_content=tracker.store_content,
                completion_text_for_estimate=completion_text, request_id=request_id,
                estimated_prompt_tokens=self.estimate.result(),
            )
        except Exception as exc:
            # a response shape build_record cannot read: still log the call, from what we know
            tracker.warn_once("could not read a response for the ledger", exc)
            try:
                rec = build_record(
                    endpoint=self.endpoint, request=self.body, response=None, status=status,
                    error_type=error_type, started_at=self.started_at, latency_ms=latency_ms,
                    streamed=self.stream, tags=self.tags, via="wrap", store_content=False,
                    completion_text_for_estimate=completion_text or "", request_id=request_id,
                    estimated_prompt_tokens=self.estimate.result(),
                )
            except Exception as exc2:
                tracker.warn_once("could not log a call", exc2)
                return
        tracker.ledger.record(rec)  # never raises: spools beside the database on failure


_TYPES: tuple[tuple[type, ...], type, tuple[type, ...]] | None = None


def _sdk_types() -> tuple[tuple[type, ...], type, tuple[type, ...]]:
    """(Stream classes, LegacyAPIResponse, APIResponse classes), imported once, lazily."""
    global _TYPES
    if _TYPES is None:
        from openai import AsyncStream, Stream
        from openai._legacy_response import LegacyAPIResponse
        from openai._response import APIResponse, AsyncAPIResponse

        _TYPES = ((Stream, AsyncStream), LegacyAPIResponse, (APIResponse, AsyncAPIResponse))
    return _TYPES


def _with_usage_requested(options: Any) -> Any:
    from openai._compat import model_copy

    new = model_copy(options)
    body = dict(new.json_data)
    asked = body.get("stream_options")
    body["stream_options"] = {**(asked if isinstance(asked, dict) else {}), "include_usage": True}
    new.json_data = body
    return new


def _check_budgets(tracker: _Tracker, model: Any, estimate: int | None, call_tags: dict[str, str]) -> None:
    """Ask the budgets module whether this call may go out; only ``BudgetExceeded`` escapes.

    The estimated cost is the prompt estimate at the requested model's current price (the
    completion is unknown before the call).
    """
    try:
        from .budgets import check_budgets
    except ImportError:  # pragma: no cover - budgets.py ships with tokencost
        return
    try:
        ledger = tracker.ledger
        cost: Decimal | None = None
        if estimate is not None and isinstance(model, str):
            from .pricing import price_for_recent

            try:
                cost = price_for_recent(model).cost(estimate).total
            except Exception:  # unpriced, or the prices file is unreadable: the budget counts this
                cost = None    # call's estimate as 0 and is still checked (an exceeded one still refuses)
        check_budgets(ledger, model=str(model), estimated_cost_usd=cost, tags=call_tags)
    except BudgetExceeded:
        raise
    except Exception as exc:
        tracker.warn_once("budget check failed, call sent anyway", exc)
