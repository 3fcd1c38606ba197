"""A local OpenAI-compatible server that replays recorded real OpenAI responses.

Real HTTP on 127.0.0.1 (stdlib ``ThreadingHTTPServer``), so tests exercise the real ``openai``
client, its connection pool, SSE parsing, retries and error classes. The bodies come from
``tests/fixtures/openai/`` (see ``SOURCES.md`` there for where each one was published).

Use it as a pytest fixture (``fake_openai``), as a context manager (``with FakeOpenAI() as srv``),
or standalone for other languages and subprocesses::

    python tests/fakeserver.py --port 0      # prints http://127.0.0.1:PORT/v1, serves until killed

Without an enqueued scenario a request gets the default for its path: ``/v1/chat/completions``
answers ``chat`` or, when ``stream`` is true, ``chat_stream_usage`` (the usage chunk is sent only
when the request has ``stream_options.include_usage`` — as the real API does); ``/v1/responses``
answers ``responses`` / ``responses_stream``; ``/v1/completions`` ``completions``;
``/v1/embeddings`` ``embeddings``.

``enqueue(scenario, **kw)`` queues the next response(s), first in first out. Scenarios:

=====================  ==================================================================
chat                   non-streamed chat completion (gpt-4o-2024-08-06, usage 14 + 37; when the
                       request's model starts with "gpt-3.5" the gpt-3.5-turbo-0125 recording, 13 + 5)
chat_stream            streamed chat, never a usage chunk (a server ignoring include_usage)
chat_stream_usage      streamed chat, usage chunk (14 + 47) only if include_usage was asked
responses              non-streamed Responses API body (gpt-4o-mini, usage 14 + 50)
responses_stream       streamed Responses API events (gpt-4.1, usage 37 + 11)
completions            legacy completion (gpt-3.5-turbo-instruct, usage 13 + 5)
embeddings             embeddings (text-embedding-ada-002, usage 8)
error_429              rate limit error JSON, status 429
error_500              server error JSON, status 500
error_400              context_length_exceeded error JSON, status 400
stream_cut             a streamed chat that drops the socket after ``after`` chunks (default 5)
slow                   the path's default response, after ``delay`` seconds (default 1.0)
=====================  ==================================================================

Keyword options for every scenario: ``delay`` (seconds before answering), ``times`` (how many
requests it answers, default 1), ``headers`` (extra response headers), ``body`` (a dict or str
replacing the recorded body), ``status`` (override the status code), ``fixture`` (another file
name under ``tests/fixtures/openai``, e.g. ``"chat_stream_say_foo.sse"``), ``after`` (stream_cut).

Note the real ``openai`` client retries 429 and 5xx twice by default: use ``max_retries=0`` on the
client or ``times=3`` to fail every attempt.

``received`` lists every request as ``{"method", "path", "headers", "json"}`` with header names
lower-cased and the ``authorization`` / ``api-key`` headers removed: keys never reach a test log.

Standalone mode also exposes a control API for out-of-process tests: ``POST /_fake/enqueue``
with ``{"scenario": ..., **kw}``, ``GET /_fake/received``, ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import itertools
import json
import socket
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "openai"

# scenario -> (fixture file, status)
_FILES: dict[str, tuple[str, int]] = {
    "chat": ("chat_completion_gpt-4o.json", 200),
    "chat_stream": ("chat_stream_gpt-4o.sse", 200),
    "chat_stream_usage": ("chat_stream_gpt-4o.sse", 200),
    "stream_cut": ("chat_stream_gpt-4o.sse", 200),
    "responses": ("responses_gpt-4o-mini.json", 200),
    "responses_stream": ("responses_stream_gpt-4.1.sse", 200),
    "completions": ("completions_gpt-3.5-turbo-instruct.json", 200),
    "embeddings": ("embeddings_ada-002.json", 200),
    "error_429": ("error_429_rate_limit.json", 429),
    "error_500": ("error_500_server_error.json", 500),
    "error_400": ("error_400_context_length.json", 400),
}
SCENARIOS = tuple(_FILES) + ("slow",)
_SECRET_HEADERS = {"authorization", "api-key", "openai-api-key", "cookie", "proxy-authorization"}


def load_fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def sse_events(text: str) -> list[str]:
    """Split a recorded SSE body into its events (each keeps its own ``\\n\\n`` terminator)."""
    return [block + "\n\n" for block in text.split("\n\n") if block.strip()]


def _event_json(event: str) -> dict[str, Any] | None:
    for line in event.splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                try:
                    return json.loads(payload)
                except ValueError:
                    return None
    return None


def _is_usage_chunk(event: str) -> bool:
    data = _event_json(event)
    return bool(data) and data.get("choices") == [] and data.get("usage") is not None


def _default_scenario(path: str, body: dict[str, Any] | None) -> str:
    stream = bool(body and body.get("stream"))
    if path.endswith("/chat/completions"):
        return "chat_stream_usage" if stream else "chat"
    if path.endswith("/responses"):
        return "responses_stream" if stream else "responses"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith("/embeddings"):
        return "embeddings"
    return "not_found"


class _Plan:
    def __init__(self, scenario: str, kw: dict[str, Any], *, check: bool = True) -> None:
        if check and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.kw = dict(kw)
        self.times = int(self.kw.pop("times", 1))


class FakeOpenAI:
    """The fake server. ``base_url`` ends in ``/v1`` like ``OPENAI_BASE_URL``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self._queue: collections.deque[_Plan] = collections.deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None
        self.host, self.port = self._httpd.server_address[:2]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control -----------------------------------------------------------------------------
    def enqueue(self, scenario: str, **kw: Any) -> None:
        """Queue the next response(s); see the module docstring for scenarios and options."""
        plan = _Plan(scenario, kw)
        with self._lock:
            self._queue.append(plan)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.received.clear()

    def requests_to(self, suffix: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"].endswith(suffix)]

    def _next_plan(self, path: str, body: dict[str, Any] | None) -> _Plan:
        with self._lock:
            if self._queue:
                plan = self._queue[0]
                plan.times -= 1
                if plan.times <= 0:
                    self._queue.popleft()
                return plan
        return _Plan(_default_scenario(path, body), {}, check=False)

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        clean = {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
        with self._lock:
            self.received.append({"method": method, "path": path, "headers": clean, "json": body})

    def _request_id(self) -> str:
        return f"req_fake{next(self._ids):04d}{uuid.uuid4().hex[:20]}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # 50 concurrent clients must not be reset by a short listen backlog
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or abandon a stream reset the socket; that is a scenario, not a bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streams, like api.openai.com
    disable_nagle_algorithm = True  # else every keep-alive response waits ~40 ms for a delayed ACK
    server: _Server
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # quiet: test output stays readable
        return None

    # -- plumbing ----------------------------------------------------------------------------
    def _read_json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in self._common_headers(extra).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout test): nothing to do

    def _common_headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {
            "x-request-id": self.server.fake._request_id(),
            "openai-version": "2020-10-01",
            "openai-processing-ms": "1",
        }
        headers.update(extra or {})
        return headers

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # -- verbs -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.startswith("/_fake/received"):
            self._send(200, json.dumps(self.server.fake.received).encode())
            return
        self._not_found()

    def do_POST(self) -> None:
        body = self._read_json()
        fake = self.server.fake
        if self.path.startswith("/_fake/"):
            self._control(body)
            return
        fake._record("POST", self.path, dict(self.headers.items()), body)
        plan = fake._next_plan(self.path, body if isinstance(body, dict) else None)
        kw = plan.kw
        delay = float(kw.get("delay", 1.0 if plan.scenario == "slow" else 0.0))
        if delay:
            time.sleep(delay)
        scenario = plan.scenario
        if scenario == "slow":
            scenario = _default_scenario(self.path, body if isinstance(body, dict) else None)
        if scenario == "not_found":
            self._not_found()
            return
        self._answer(scenario, kw, body if isinstance(body, dict) else {})

    def _control(self, body: Any) -> None:
        fake = self.server.fake
        try:
            if self.path.startswith("/_fake/enqueue"):
                spec = dict(body or {})
                fake.enqueue(spec.pop("scenario"), **spec)
            elif self.path.startswith("/_fake/reset"):
                fake.reset()
            else:
                self._not_found()
                return
        except (KeyError, ValueError, TypeError) as exc:
            self._send(400, json.dumps({"error": str(exc)}).encode())
            return
        self._send(200, b'{"ok": true}')

    def _not_found(self) -> None:
        err = {"error": {"message": f"Invalid URL (POST {self.path})", "type": "invalid_request_error",
                         "param": None, "code": None}}
        self._send(404, json.dumps(err).encode())

    # -- responses ---------------------------------------------------------------------------
    def _answer(self, scenario: str, kw: dict[str, Any], request: dict[str, Any]) -> None:
        fname, status = _FILES[scenario]
        if scenario == "chat" and str(request.get("model", "")).startswith("gpt-3.5"):
            fname = "chat_completion_gpt-3.5-turbo.json"
        fname = kw.get("fixture", fname)
        status = int(kw.get("status", status))
        extra = {str(k): str(v) for k, v in (kw.get("headers") or {}).items()}
        if "body" in kw:
            text = kw["body"] if isinstance(kw["body"], str) else json.dumps(kw["body"])
        else:
            text = load_fixture(fname)
        if fname.endswith(".sse") and "body" not in kw:
            events = sse_events(text)
            if scenario in ("chat_stream", "stream_cut") or (
                scenario == "chat_stream_usage" and not _wants_usage(request)
            ):
                events = [e for e in events if not _is_usage_chunk(e)]
            cut = int(kw.get("after", 5)) if scenario == "stream_cut" else None
            self._stream(status, events, extra, cut)
            return
        if scenario == "embeddings" and "body" not in kw and request.get("encoding_format") == "base64":
            text = _as_base64_embeddings(text)
        self._send(status, text.encode("utf-8"), extra=extra)

    def _stream(self, status: int, events: list[str], extra: dict[str, str], cut: int | None) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        for k, v in self._common_headers(extra).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            for i, event in enumerate(events):
                if cut is not None and i >= cut:
                    # An abrupt close mid-body: no terminating chunk, so the client sees an
                    # incomplete chunked read exactly as when a real connection drops.
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self._chunk(event.encode("utf-8"))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client walked away mid-stream: fine


def _wants_usage(request: dict[str, Any]) -> bool:
    opts = request.get("stream_options") or {}
    return bool(isinstance(opts, dict) and opts.get("include_usage"))


def _as_base64_embeddings(text: str) -> str:
    """What the API sends for ``encoding_format="base64"``: little-endian float32 bytes, base64."""
    data = json.loads(text)
    for item in data.get("data", []):
        vec = item.get("embedding")
        if isinstance(vec, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
    return json.dumps(data)


def iter_recorded_text(fixture: str) -> Iterator[str]:
    """The assistant text a recorded chat stream carries, delta by delta (for test assertions)."""
    for event in sse_events(load_fixture(fixture)):
        data = _event_json(event)
        if data and data.get("choices"):
            content = data["choices"][0].get("delta", {}).get("content")
            if content:
                yield content


# -- pytest fixture ---------------------------------------------------------------------------
try:
    import pytest
except ImportError:  # standalone use without pytest installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_openai() -> Iterator[FakeOpenAI]:
        with FakeOpenAI() as server:
            yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local fake OpenAI server replaying recorded responses")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the fake server only listens on loopback")
    server = FakeOpenAI(args.host, args.port)
    print(server.base_url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
