"""Shared helpers for the proxy tests (no tests here): a proxy in front of the fake server, the ledger
read back from its file, and a scripted upstream for what the replaying fake cannot do (hold a
stream open until told, notice a client that went away, echo the headers it got)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakeserver import FakeOpenAI
from tokencost.proxy import ProxyConfig
from tests.ledger_helpers import call_rows
from tokencost.runner import ProxyServer

SECRET = "sk-proxy-test-0123456789SECRETabcdef"
MESSAGES = [{"role": "user", "content": "What's the weather like in SF?"}]  # the recorded request


ledger_rows = call_rows  # the ledger tests' reader, under the name these tests use


def all_ledger_bytes(db: Path) -> bytes:
    """The database and everything beside it (WAL, shared memory, spool files)."""
    return b"".join(p.read_bytes() for p in sorted(Path(db).parent.glob(Path(db).name + "*")) if p.is_file())


@pytest.fixture
def ledger_db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def proxy(fake_openai: FakeOpenAI, ledger_db: Path) -> Iterator[ProxyServer]:
    """A started proxy in front of the fake; stopped (ledger flushed) at teardown."""
    server = ProxyServer(ProxyConfig(upstream=fake_openai.base_url, db=ledger_db, tags={"team": "qa"}), port=0)
    with server:
        yield server


def openai_client(base_url: str, **kw: Any) -> Any:
    import openai

    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=base_url, api_key=SECRET, **kw)


def rows_after_flush(server: ProxyServer, expected: int) -> list[dict[str, Any]]:
    """The ledger once ``expected`` calls are written. A client can have the last byte of a response
    a moment before the proxy queues its row, so wait for the count (the test fails if it is never
    reached), then give any surplus row a moment to show up too."""
    wait_for(lambda: len(server.sink.ids) + server.sink.failures >= expected)
    time.sleep(0.05)
    server.sink.flush()
    assert server.sink.failures == 0
    assert server.sink.path is not None
    return ledger_rows(server.sink.path)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- a scripted upstream ------------------------------------------------------------------------

def sse_chunk(i: int, content: str | None, *, model: str = "gpt-4o-2024-08-06") -> bytes:
    delta = {"content": content} if content is not None else {}
    data = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class ScriptedUpstream:
    """``POST .../chat/completions`` streams ``events`` (bytes), waiting ``gap`` seconds between them
    and, before event ``hold_at``, until ``release`` is set. ``GET .../echo`` answers the request
    headers it received as JSON (with ``?hop=1`` it also sends a header its ``Connection`` header
names). ``gone_at`` is the event index whose write failed (client gone)."""

    def __init__(self, events: list[bytes], *, gap: float = 0.0, hold_at: int | None = None) -> None:
        self.events = events
        self.gap = gap
        self.hold_at = hold_at
        self.release = threading.Event()
        self.gone_at: int | None = None
        self.finished = threading.Event()
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                body = json.dumps({"path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("x-upstream", "scripted")
                if "hop=1" in self.path:  # a header this hop names as its own (RFC 9110 §7.6.1)
                    self.send_header("x-hop-only", "upstream-to-proxy")
                    self.send_header("connection", "x-hop-only")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                outer.requests.append({"path": self.path, "body": raw,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("x-request-id", "req_scripted")
                self.end_headers()
                try:
                    for i, event in enumerate(outer.events):
                        if outer.hold_at is not None and i == outer.hold_at:
                            outer.release.wait(30)
                        elif outer.gap and i:
                            time.sleep(outer.gap)
                        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    outer.gone_at = i
                    self.close_connection = True
                finally:
                    outer.finished.set()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
