"""Running the proxy: in the foreground (``tokencost proxy``) or beside a command (``tokencost run``).

``tokencost run -- CMD`` serves the proxy from a thread of its own process rather than a second
Python process: the listening socket is bound (port 0, loopback) *before* the command starts, so the
command can never race the proxy's start-up; there is one process to signal; and the run's rows are
known exactly — the ids our own ledger thread wrote — instead of guessed from a time window that
another process writing the same ledger could share. The proxy's threads share the GIL only with a
main thread that sits in ``wait()``; the command itself is a separate process.

Signals: SIGTERM is forwarded to the command. SIGINT is forwarded too, except when it almost
certainly came from the terminal (our stdin is a terminal whose foreground process group is ours):
the terminal has already delivered it to the command, which shares our process group, and sending
it twice would make e.g. Python see two KeyboardInterrupts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import UsageError
from .proxy import DEFAULT_HOST, DEFAULT_PORT, ProxyConfig, RecordSink, block_stop_signals, create_app, warm_up

__all__ = [
    "CommandNotFound",
    "ModelSpend",
    "ProxyServer",
    "RunResult",
    "RunSummary",
    "child_environment",
    "run_command",
    "summarize",
]

# Every variable a common client reads for its base URL. The first three take the URL with /v1
# (official SDKs, LangChain, LiteLLM, the 0.x python SDK); OPENAI_API_HOST clients append /v1.
BASE_URL_VARS = ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_BASE_URL")
HOST_VARS = ("OPENAI_API_HOST",)
_INTERPRETERS = {"python", "python3", "node", "deno", "bun", "ruby", "perl", "php", "npx", "uv", "uvx",
                 "poetry", "pipenv", "bash", "sh"}


class CommandNotFound(UsageError):
    exit_code = 127  # what a shell returns for a missing command


class ProxyServer:
    """The proxy on a bound socket, served by uvicorn in the foreground or on a thread."""

    def __init__(self, config: ProxyConfig, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 grace: float | None = 30.0) -> None:
        self.config = config
        self.host = host
        self.grace = grace  # seconds to let in-flight calls finish on shutdown (None: forever)
        self.sink = RecordSink(config.db)
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        try:
            _refuse_loop(config.upstream, host, self.port)
        except BaseException:
            self._sock.close()
            raise
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def prepare(self) -> ProxyServer:
        """Open the ledger (errors surface here, before serving) and build the server; idempotent."""
        if self._server is not None:
            return self
        import uvicorn

        try:
            self.sink.start()
            app = create_app(self.config, self.sink)
        except BaseException:
            self._sock.close()
            raise
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, server_header=False, date_header=False,
            lifespan="on", timeout_graceful_shutdown=self.grace, http="h11",
        )
        self._server = _server_class()(config)
        return self

    @property
    def db_path(self) -> Path | None:
        return self.sink.path

    def serve_forever(self) -> None:
        """Serve in this (main) thread until SIGINT/SIGTERM; in-flight calls finish, the ledger flushes."""
        server = self.prepare()._server
        _warm_up_soon()
        try:
            server.run(sockets=[self._sock])
        finally:
            self._close()

    def start(self) -> ProxyServer:
        """Serve from a background thread; returns once the proxy accepts connections."""
        server = self.prepare()._server
        failed: list[BaseException] = []

        def target() -> None:
            block_stop_signals()
            try:
                server.run(sockets=[self._sock])
            except BaseException as exc:  # pragma: no cover - surfaced below
                failed.append(exc)

        self._thread = threading.Thread(target=target, name="tokencost-proxy", daemon=True)
        self._thread.start()
        while not server.started and self._thread.is_alive():
            self._thread.join(0.005)
        if not server.started:
            self._close()
            raise UsageError(f"the proxy did not start: {failed[0] if failed else 'unknown error'}")
        _warm_up_soon()
        return self

    def stop(self) -> None:
        """Stop accepting, let in-flight calls finish (up to ``grace``), flush the ledger."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self._close()

    def _close(self) -> None:
        self.sink.close()
        self._sock.close()

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _warm_up_soon() -> None:
    # After start-up, not during it: loading tokenizers holds the GIL for ~0.5 s, and the command
    # we run must not wait for that. A call arriving meanwhile waits only for what it needs.
    def target() -> None:
        block_stop_signals()
        warm_up()

    threading.Thread(target=target, name="tokencost-warm-up", daemon=True).start()


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGINT/SIGTERM once it has stopped gracefully, so the process would
            # die of it (exit 143, or a KeyboardInterrupt) after a clean stop. For this server a
            # signal *is* the normal way to stop: handle it, finish, return.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only for sockets whose proto
    # says TCP. Left on, a response's body written a moment after its headers waits ~40 ms for the
    # client's delayed ACK — on every keep-alive call (measured in bench/bench_proxy.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "; pass another --port (or --port 0 for any free one)" if port else ""
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _refuse_loop(upstream: str, host: str, port: int) -> None:
    """An upstream that is this very proxy (a stale OPENAI_BASE_URL) would forward to itself forever."""
    parts = urlsplit(upstream)
    loopback = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", host}
    up_port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.hostname in loopback and up_port == port:
        raise UsageError(
            f"the upstream {upstream} is this proxy itself ({host}:{port}); unset OPENAI_BASE_URL or pass "
            "--upstream https://api.openai.com/v1"
        )


def child_environment(environ: Mapping[str, str], base_url: str) -> dict[str, str]:
    """The command's environment: every common base-URL variable points at the proxy."""
    env = dict(environ)
    for name in BASE_URL_VARS:
        env[name] = base_url
    for name in HOST_VARS:
        env[name] = base_url[: -len("/v1")]
    env["TOKENCOST_PROXY_URL"] = base_url
    # A corporate HTTP(S)_PROXY must not capture calls to our loopback port.
    for name in ("NO_PROXY", "no_proxy"):
        current = [h for h in env.get(name, "").split(",") if h.strip()]
        env[name] = ",".join(current + [h for h in ("127.0.0.1", "localhost", "::1") if h not in current])
    return env


def app_name(argv: Sequence[str]) -> str:
    """What ``--by app`` reports for a run: ``chatbot.js`` for ``node chatbot.js``, else the program."""
    first = Path(argv[0]).name
    if first in _INTERPRETERS or first.startswith("python"):
        rest = [a for a in argv[1:] if not a.startswith("-")]
        if rest:
            return Path(rest[0]).name
    return first


@dataclass(frozen=True)
class ModelSpend:
    model: str
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal | None  # None: no priced row (never shown as $0)
    unpriced_calls: int


@dataclass(frozen=True)
class RunSummary:
    db: Path | None
    models: tuple[ModelSpend, ...] = ()
    missing: int = 0  # calls logged by this run but not (yet) in the ledger file: spooled beside it
    not_recorded: int = 0  # calls we failed to turn into a row (logged as errors)

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models)

    @property
    def prompt_tokens(self) -> int:
        return sum(m.prompt_tokens for m in self.models)

    @property
    def completion_tokens(self) -> int:
        return sum(m.completion_tokens for m in self.models)

    @property
    def cost_usd(self) -> Decimal:
        return sum((m.cost_usd for m in self.models if m.cost_usd is not None), Decimal(0))


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    summary: RunSummary
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(db: Path | None, ids: Sequence[str], not_recorded: int = 0) -> RunSummary:
    """Spend of the rows ``ids`` (this run's), per model as the API reported it, from the ledger file."""
    if not ids or db is None:
        return RunSummary(db, (), 0, not_recorded)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        con.execute("CREATE TEMP TABLE run_ids (id TEXT PRIMARY KEY)")
        con.executemany("INSERT OR IGNORE INTO run_ids VALUES (?)", [(i,) for i in ids])
        rows = con.execute(
            """SELECT COALESCE(c.model, c.model_requested, '?') AS m, COUNT(*),
                      SUM(c.status IS NULL OR c.status >= 400),
                      COALESCE(SUM(c.prompt_tokens), 0), COALESCE(SUM(c.completion_tokens), 0),
                      SUM(c.total_cost_pusd), SUM(c.total_cost_pusd IS NULL AND COALESCE(c.total_tokens, 0) > 0)
               FROM calls c JOIN run_ids r ON r.id = c.id GROUP BY m ORDER BY m"""
        ).fetchall()
    finally:
        con.close()
    models = tuple(
        ModelSpend(m, n, failed, pt, ct, None if pusd is None else Decimal(pusd).scaleb(-12), unpriced)
        for m, n, failed, pt, ct, pusd, unpriced in rows
    )
    found = sum(m.calls for m in models)
    return RunSummary(db, models, len(set(ids)) - found, not_recorded)


def _from_terminal() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def run_command(argv: Sequence[str], config: ProxyConfig, *, host: str = DEFAULT_HOST,
                environ: Mapping[str, str] | None = None) -> RunResult:
    """Serve the proxy on a free loopback port, run ``argv`` against it, return its exit code and spend."""
    if not argv:
        raise UsageError("no command given; usage: tokencost run [OPTIONS] -- CMD [ARGS]...")
    proc: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that came before the command existed

    def forward(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and _from_terminal():
            return  # the terminal sent it to the command too
        if proc is None:
            early.append(signum)
        elif proc.poll() is None:
            proc.send_signal(signum)

    # Handlers first: once the command runs it may signal us at any moment, and the main thread can
    # be slow to get back the GIL from the tokenizer warm-up.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)
    server: ProxyServer | None = None
    try:
        server = ProxyServer(config, host=host, port=0).start()
        env = child_environment(os.environ if environ is None else environ, server.base_url)
        if early:  # asked to stop before we started anything
            return RunResult(128 + early[0], RunSummary(server.sink.path))
        try:
            proc = subprocess.Popen(list(argv), env=env)
        except (FileNotFoundError, PermissionError) as exc:
            raise CommandNotFound(f"cannot run {argv[0]!r}: {exc.strerror}; is it installed and on PATH?") from None
        for sig in early:  # arrived while the command was being started
            proc.send_signal(sig)
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc is not None and proc.poll() is None:  # we are failing: do not leave it behind
            proc.kill()
            proc.wait()
        if server is not None:
            server.stop()
    summary = summarize(server.sink.path, server.sink.ids, server.sink.failures)
    return RunResult(128 - code if code < 0 else code, summary)
