"""A local OpenAI-compatible proxy that logs every call's usage and cost to the ledger.

Point any client (Node, Go, curl...) at ``http://127.0.0.1:8787/v1`` instead of the API. Every request
is forwarded unchanged — method, path, query, headers minus hop-by-hop ones, body — and upstream's
status, headers and bytes come back as they arrive. POSTs to the four billed endpoints
(``chat/completions``, ``responses``, ``completions``, ``embeddings``) are also logged, through the
same :func:`tokencost.record.build_record` the wrapper uses, so proxy rows match wrapper rows. (Which
paths are billed is :func:`tokencost.usage.endpoint_for_path`'s call: it matches the path's end, so
Azure-style ``/openai/deployments/NAME/chat/completions`` is logged too.)

Path mapping: the proxy's ``/v1`` *is* the upstream base URL (which usually ends in ``/v1`` itself):
``/v1/chat/completions`` goes to ``{upstream}/chat/completions``. A path without the ``/v1`` prefix is
taken relative to the upstream base too, so clients configured with or without ``/v1`` both work.

What the proxy changes, and why:

* Streamed chat/completions requests that did not ask for usage get
  ``stream_options.include_usage = true`` upstream (otherwise the API reports no usage for streams),
  and the extra usage-only event is removed from what that client receives.
* Billed endpoints are fetched with ``Accept-Encoding: identity`` so usage can be read from the bytes
  we forward; the hop to the client is loopback, where compression buys nothing.
* ``X-Tokencost-Tags: user=alice,feature=search`` is read and not forwarded (values may be
  percent-encoded to hold commas). Items breaking :func:`parse_tags`'s rule are ignored, with one
  warning per process on stderr; the call goes through regardless.
* ``Authorization`` (and every other header) goes upstream and nowhere else: no header is logged.

The ledger is written by one background thread (:class:`RecordSink`); the event loop only queues,
so SQLite never stalls a stream. Shutdown drains the queue.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

from .errors import BudgetExceeded, UsageError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_UPSTREAM",
    "HOP_BY_HOP",
    "hop_by_hop",
    "ProxyConfig",
    "RecordSink",
    "block_stop_signals",
    "create_app",
    "default_upstream",
    "parse_tags",
    "warm_up",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_UPSTREAM = "https://api.openai.com/v1"
TAGS_HEADER = "x-tokencost-tags"

# RFC 9110 §7.6.1 hop-by-hop headers: they describe one connection, never forwarded either way.
HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer "
    b"trailers transfer-encoding upgrade".split()
)


def hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """:data:`HOP_BY_HOP` plus every header a ``Connection`` header names (RFC 9110 §7.6.1:
    ``Connection: close, X-Foo`` makes ``X-Foo`` hop-by-hop too). Names are lower-case bytes."""
    named = {name.strip().lower() for k, v in headers if k.lower() == b"connection" for name in v.split(b",")}
    named.discard(b"")
    return HOP_BY_HOP | named if named else HOP_BY_HOP


# host and content-length are recomputed by httpx; expect: the proxy already holds the body.
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"expect", TAGS_HEADER.encode()}
_DROP_REQUEST_BILLED = _DROP_REQUEST | {b"accept-encoding"}

log = logging.getLogger("tokencost.proxy")


def default_upstream(environ: Mapping[str, str] | None = None) -> str:
    """``$OPENAI_BASE_URL`` if set, else the official API — read before ``tokencost run`` changes it."""
    env = os.environ if environ is None else environ
    return (env.get("OPENAI_BASE_URL") or "").strip() or DEFAULT_UPSTREAM


_TAG_KEY = re.compile(r"[A-Za-z0-9_.:-]+")
_warned_bad_tags = False  # one warning per process: a misconfigured client would repeat it every call
_warn_lock = threading.Lock()


def parse_tags(value: str) -> dict[str, str]:
    """``"user=alice,feature=search"`` -> ``{"user": "alice", "feature": "search"}``.

    The rule: comma-separated ``KEY=VALUE`` pairs, spaces around either allowed. ``KEY`` is one or
    more of ``A-Z a-z 0-9 _ . : -``; ``VALUE`` is anything up to the next comma, percent-decoded (so
    ``note=a%2Cb`` carries a comma), and may be empty. Blank items (a trailing comma) are skipped.
    Any other item (``===``, ``flag``, ``bad key=x``) is dropped, never guessed at: see
    :func:`_split_tags` for what the proxy does about them.
    """
    return _split_tags(value)[0]


def _split_tags(value: str) -> tuple[dict[str, str], list[str]]:
    """The tags of a header value, and the items that broke :func:`parse_tags`'s rule."""
    out: dict[str, str] = {}
    bad: list[str] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not _TAG_KEY.fullmatch(key):
            bad.append(item)
            continue
        out[key] = unquote(val.strip())
    return out, bad


def _warn_bad_tags(bad: list[str]) -> None:
    # A bad tag must never break the user's call (it is forwarded either way), nor go unnoticed.
    global _warned_bad_tags
    with _warn_lock:
        if _warned_bad_tags:
            return
        _warned_bad_tags = True
    shown = ", ".join(repr(item[:40]) for item in bad[:3]) + (", ..." if len(bad) > 3 else "")
    log.warning(
        "tokencost proxy: warning: ignored malformed X-Tokencost-Tags item(s) %s; the header takes "
        "KEY=VALUE pairs separated by commas, KEY made of letters, digits and _ . : - "
        "(calls are still forwarded and logged; this warning is shown once)", shown,
    )


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str = DEFAULT_UPSTREAM
    db: str | os.PathLike[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)  # defaults; the header's tags win
    app: str | None = None
    store_content: bool = False
    timeout: float = 600.0  # seconds between bytes from upstream (the OpenAI SDKs' default is 600)
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        base = self.upstream.rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base):
            raise UsageError(
                f"upstream {self.upstream!r} is not an http(s) URL; pass e.g. --upstream https://api.openai.com/v1"
            )
        object.__setattr__(self, "upstream", base)


class RecordSink:
    """The thread that owns the ledger. ``submit`` never blocks and never raises.

    Opening the ledger happens in that thread (SQLite connections belong to one thread); an error
    opening it is re-raised by :meth:`start`, so ``tokencost proxy`` fails fast with a clear message.
    """

    def __init__(self, db: str | os.PathLike[str] | None = None) -> None:
        self.db = db
        self.path: Path | None = None
        self.ids: list[str] = []  # ids of the rows recorded, in order (``tokencost run``'s summary)
        self.failures = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tokencost-ledger", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> RecordSink:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def submit(self, fields: dict[str, Any]) -> None:
        self._queue.put(fields)

    def flush(self) -> None:
        """Wait until every submitted call is in the ledger (or counted in ``failures``)."""
        if self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        block_stop_signals()
        try:
            from .ledger import open_ledger
            from .record import build_record

            ledger = open_ledger(self.db)
            self.path = Path(ledger.path)
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                fields = self._queue.get()
                try:
                    if fields is None:
                        return
                    rec = build_record(**fields)
                    ledger.record(rec)  # never raises: spools beside the db on failure
                    self.ids.append(rec.id)
                except Exception:
                    # build_record failing is a bug in our code, not the user's: say so loudly,
                    # count it, and keep the proxy serving.
                    self.failures += 1
                    log.exception("tokencost proxy: could not record a %s call", (fields or {}).get("endpoint"))
                finally:
                    self._queue.task_done()
        finally:
            close = getattr(ledger, "close", None)
            if callable(close):
                close()


def block_stop_signals() -> None:
    """Leave SIGINT/SIGTERM to the main thread; call first thing in every thread we start.

    The kernel hands a process signal to any thread not blocking it, and Python only runs handlers
    in the main thread when it next executes bytecode: a main thread sitting in ``waitpid()``
    (``tokencost run``) would never hear of a SIGTERM that landed on the ledger thread. Threads
    started from ours (asyncio's resolver pool) inherit the mask.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def warm_up() -> None:
    """Load tokenizers and prices now, off the event loop, so the first call is not the slow one."""
    try:
        from .pricing import price_for
        from .record import estimate_prompt_tokens

        for model in ("gpt-4o", "gpt-3.5-turbo"):  # o200k_base and cl100k_base
            estimate_prompt_tokens("chat.completions", {"messages": [{"role": "user", "content": "hi"}]}, model)
            price_for(model)
        from . import budgets  # noqa: F401
    except Exception:  # only a warm-up; the real call reports real problems
        pass


def _split_base(path: str) -> str:
    """The request path relative to the upstream base URL (see the module docstring)."""
    if path == "/v1" or path.startswith("/v1/"):
        return path[3:]
    return path


def _error_body(message: str, type_: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def _exc_error_type(exc: BaseException) -> str:
    """The class name the official SDKs raise for a failed connection, so proxy rows match wrapper rows."""
    import httpx

    return "APITimeoutError" if isinstance(exc, httpx.TimeoutException) else "APIConnectionError"


_NOT_COUNTED = object()


class _Call:
    """One billed request: what the ledger row needs, filled in as the exchange progresses."""

    __slots__ = ("endpoint", "request", "tags", "started_at", "t0", "streamed", "estimate", "request_id")

    def __init__(self, endpoint: str, request: dict[str, Any], tags: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.request = request
        self.tags = tags
        self.started_at = datetime.now(timezone.utc)
        self.t0 = time.perf_counter()
        self.streamed = request.get("stream") is True
        self.estimate: Any = _NOT_COUNTED  # int | None once counted before sending
        self.request_id: str | None = None

    def fields(self, config: ProxyConfig, *, response: dict[str, Any] | None, status: int | None,
               error_type: str | None, text: str | None = None) -> dict[str, Any]:
        """Keyword arguments for :func:`tokencost.record.build_record`, exactly as the wrapper passes them."""
        return {
            "endpoint": self.endpoint, "request": self.request, "response": response, "status": status,
            "error_type": error_type, "started_at": self.started_at,
            "latency_ms": (time.perf_counter() - self.t0) * 1000.0, "streamed": self.streamed,
            "tags": self.tags, "via": "proxy", "app": config.app, "store_content": config.store_content,
            "completion_text_for_estimate": text, "request_id": self.request_id,
            **({} if self.estimate is _NOT_COUNTED else {"estimated_prompt_tokens": self.estimate}),
        }


def _preflight(ledger_path: Path | None, call: _Call) -> None:
    """The budget hook: raises BudgetExceeded (or warns) before anything is sent upstream.

    It needs our prompt estimate priced, which costs ~0.1 ms of the event loop per call; with no
    budget defined the estimate is left to the ledger thread (build_record computes the same number).
    """
    model = call.request.get("model")
    if not isinstance(model, str) or not model or ledger_path is None:
        return
    from . import budgets

    if not budgets.has_budgets(ledger_path):
        return
    from .record import estimate_prompt_tokens

    call.estimate = estimate_prompt_tokens(call.endpoint, call.request, model)
    cost: Decimal | None = None
    if call.estimate is not None:
        try:
            from .pricing import price_for_recent

            cost = price_for_recent(model, call.started_at).cost(call.estimate).total
        except Exception:  # unknown or unpriced model: the budget counts it as 0, like the wrapper
            cost = None
    budgets.check_budgets(ledger_path, model=model, estimated_cost_usd=cost, tags=call.tags)


def create_app(config: ProxyConfig, sink: RecordSink) -> Any:
    """The proxy as an ASGI app (Starlette request/response classes and lifespan). ``sink`` must be
    started; the app never closes it."""
    import httpx
    from contextlib import asynccontextmanager
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ._proxy_relay import Relay
    from .usage import endpoint_for_path

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Any):  # noqa: ANN202
        # No cookie jar shared between clients, no proxy env surprises for loopback upstreams.
        state["client"] = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            cookies=_no_cookie_jar(),
            follow_redirects=False,
        )
        try:
            yield
        finally:
            await state["client"].aclose()
            sink.flush()

    def fail(status: int, message: str, type_: str, code: str) -> Response:
        # x-should-retry: the OpenAI SDKs honour it; retrying a refused budget only repeats the refusal.
        headers = {"x-should-retry": "false"} if status == 429 else {}
        return Response(_error_body(message, type_, code), status, headers, media_type="application/json")

    async def handle(request: Request) -> Response:
        scope = request.scope
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        rel = _split_base(raw_path.decode("latin-1"))
        url = config.upstream + rel
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        endpoint = endpoint_for_path(rel) if request.method == "POST" else None

        drop = (_DROP_REQUEST_BILLED if endpoint else _DROP_REQUEST) | hop_by_hop(scope["headers"])
        headers = [(k, v) for k, v in scope["headers"] if k not in drop]
        call: _Call | None = None
        hide_usage = False
        if endpoint:
            tags = dict(config.tags)
            for k, v in scope["headers"]:
                if k == TAGS_HEADER.encode():
                    parsed_tags, bad = _split_tags(v.decode("utf-8", "replace"))
                    tags.update(parsed_tags)
                    if bad:
                        _warn_bad_tags(bad)
            headers.append((b"accept-encoding", b"identity"))
            content: Any = await request.body()
            try:
                parsed = json.loads(content) if content else None
            except ValueError:
                parsed = None  # malformed: forwarded as is, upstream says what is wrong
            body = parsed if isinstance(parsed, dict) else {}
            call = _Call(endpoint, body, tags)
            if body.get("stream") is True and endpoint in ("chat.completions", "completions"):
                options = body.get("stream_options")
                if not (isinstance(options, dict) and options.get("include_usage")):
                    hide_usage = True
                    upstream_body = dict(body)
                    upstream_body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                                       "include_usage": True}
                    content = json.dumps(upstream_body, ensure_ascii=False, separators=(",", ":")).encode()
                    headers = [(k, v) for k, v in headers if k != b"content-type"]
                    headers.append((b"content-type", b"application/json"))
            try:
                _preflight(sink.path, call)
            except BudgetExceeded as exc:
                return fail(429, f"tokencost: {exc}", "insufficient_quota", "tokencost_budget_exceeded")
            except Exception:  # our own bug must not cost the user their call
                log.exception("tokencost proxy: pre-call estimate or budget check failed; call sent anyway")
        elif any(k == b"content-length" or k == b"transfer-encoding" for k, _ in scope["headers"]):
            content = request.stream()
            headers += [(k, v) for k, v in scope["headers"] if k == b"content-length"]
        else:
            content = None

        client: httpx.AsyncClient = state["client"]
        upstream_request = httpx.Request(request.method, url, headers=headers, content=content)
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            timeout = isinstance(exc, httpx.TimeoutException)
            if call is not None:
                sink.submit(call.fields(config, response=None, status=None, error_type=_exc_error_type(exc)))
            what = "timed out" if timeout else "could not be reached"
            return fail(
                504 if timeout else 502,
                f"tokencost proxy: upstream {config.upstream} {what} ({type(exc).__name__}: {exc or 'no detail'})",
                "upstream_error", "upstream_timeout" if timeout else "upstream_unreachable",
            )
        return Relay(upstream, call, config, sink, hide_usage)

    # Starlette runs the lifespan; requests skip its router and middleware: there is one catch-all
    # route for every method (a Route would answer 405 to methods it does not list), and on a
    # streamed response the middleware would add its wrappers to every chunk's send().
    lifespan_app = Starlette(lifespan=lifespan)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await lifespan_app(scope, receive, send)
            return
        try:
            response = await handle(Request(scope, receive))
        except Exception as exc:  # our bug: say so in the API's error shape, keep serving
            log.exception("tokencost proxy: internal error")
            response = fail(500, f"tokencost proxy internal error: {type(exc).__name__}: {exc}",
                            "proxy_error", "tokencost_internal_error")
        await response(scope, receive, send)

    return app


def _no_cookie_jar() -> Any:
    """A cookie jar that stores nothing: one client's cookies must never reach another client."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
