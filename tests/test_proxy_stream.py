"""Streams through the proxy, byte for byte: hidden usage chunk, no buffering, cuts and walk-aways."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakeserver import iter_recorded_text, sse_events
from tests.test_proxy_support import (  # noqa: F401  (fixtures)
    MESSAGES,
    ScriptedUpstream,
    ledger_db,
    ledger_rows,
    openai_client,
    proxy,
    rows_after_flush,
    sse_chunk,
    wait_for,
)
from tokencost._proxy_sse import SSETap, split_events
from tokencost.counting import count_text_tokens
from tokencost.proxy import ProxyConfig
from tokencost.runner import ProxyServer

STREAM = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
WITH_USAGE = {**STREAM, "stream_options": {"include_usage": True}}


def _raw(url: str, body: dict) -> httpx.Response:
    r = httpx.post(url + "/chat/completions", json=body, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return r


def test_streamed_bytes_equal_upstreams_minus_the_hidden_usage_chunk(proxy, fake_openai):
    upstream = _raw(fake_openai.base_url, WITH_USAGE).content  # what the proxy itself receives
    via = _raw(proxy.base_url, STREAM).content
    assert fake_openai.received[-1]["json"] == WITH_USAGE  # the proxy asked for usage
    events = sse_events(upstream.decode())
    usage_events = [e for e in events if '"choices":[]' in e and '"usage":{' in e]
    assert len(usage_events) == 1
    assert via == upstream.replace(usage_events[0].encode(), b"", 1)
    assert len(via) < len(upstream)
    assert via.endswith(b"data: [DONE]\n\n")


def test_streamed_bytes_identical_when_the_client_asked_for_usage(proxy, fake_openai):
    upstream = _raw(fake_openai.base_url, WITH_USAGE).content
    via = _raw(proxy.base_url, WITH_USAGE).content
    assert via == upstream


def test_response_headers_are_upstreams(proxy, fake_openai):
    direct = _raw(fake_openai.base_url, WITH_USAGE)
    r = _raw(proxy.base_url, STREAM)
    assert r.headers["x-request-id"].startswith("req_fake")
    assert r.headers["openai-version"] == "2020-10-01" and r.headers["cache-control"] == "no-cache"
    # upstream's, once: the ASGI server adds no server/date header of its own
    assert r.headers.get_list("server") == direct.headers.get_list("server")
    assert len(r.headers.get_list("date")) == 1
    end_to_end = [k for k, _ in direct.headers.multi_items() if k != "transfer-encoding"]  # hop-by-hop
    assert [k for k, _ in r.headers.multi_items() if k != "transfer-encoding"] == end_to_end
    assert r.headers["transfer-encoding"] == "chunked"  # the proxy's own hop


def test_first_chunk_reaches_the_client_before_upstream_finishes(ledger_db):
    events = [sse_chunk(0, "Hello"), sse_chunk(1, " world"), b"data: [DONE]\n\n"]
    with ScriptedUpstream(events, hold_at=1) as up, \
            ProxyServer(ProxyConfig(upstream=up.base_url, db=ledger_db), port=0) as srv:
        with httpx.stream("POST", srv.base_url + "/chat/completions", json={**STREAM, "model": "gpt-4o"},
                          timeout=5) as r:
            chunks = r.iter_raw()
            first = next(chunks)  # upstream holds everything after this event until released
            assert first == events[0]
            assert not up.finished.is_set()
            up.release.set()
            rest = b"".join(chunks)
        assert rest == b"".join(events[1:])


def test_upstream_killed_mid_stream(proxy, fake_openai):
    fake_openai.enqueue("stream_cut", after=5)
    client = openai_client(proxy.base_url)
    got: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            got.append(chunk.choices[0].delta.content or "")
    expected_text = "".join(list(iter_recorded_text("chat_stream_gpt-4o.sse"))[:4])  # events 1-4 carry text
    assert "".join(got) == expected_text
    [row] = rows_after_flush(proxy, 1)
    assert row["status"] == 200 and row["error_type"] == "APIConnectionError"  # what the SDK raises
    assert row["usage_source"] == "estimated"
    assert row["completion_tokens"] == count_text_tokens(expected_text, "gpt-4o-2024-08-06")
    assert row["prompt_tokens"] == row["estimated_prompt_tokens"] == 14
    assert row["total_cost_pusd"] > 0
    # and the proxy keeps serving
    assert openai_client(proxy.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES).usage


def test_upstream_cut_aborts_the_client_connection_not_a_clean_end(proxy, fake_openai):
    fake_openai.enqueue("stream_cut", after=3)
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", proxy.base_url + "/chat/completions", json=STREAM, timeout=5) as r:
            for _ in r.iter_raw():
                pass
    rows_after_flush(proxy, 1)


def test_client_disconnect_mid_stream_is_logged_with_estimated_usage(ledger_db):
    words = [f" w{i}" for i in range(200)]
    events = [sse_chunk(i, w) for i, w in enumerate(words)] + [b"data: [DONE]\n\n"]
    with ScriptedUpstream(events, gap=0.02) as up, \
            ProxyServer(ProxyConfig(upstream=up.base_url, db=ledger_db), port=0) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        body = json.dumps(STREAM).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while received.count(b"data: ") < 5:
            received += sock.recv(65536)
        sock.close()  # the user closed the tab
        up.finished.wait(10)
        assert up.gone_at is not None and up.gone_at < 100, "the proxy must hang up on upstream too"
        wait_for(lambda: len(srv.sink.ids) == 1)
    [row] = ledger_rows(ledger_db)
    assert row["status"] == 200 and row["error_type"] is None and row["streamed"] == 1
    assert row["usage_source"] == "estimated"
    # counted from what went through: at least what the client read, far less than the whole stream
    assert 5 <= row["completion_tokens"] < count_text_tokens("".join(words), "gpt-4o")
    assert row["latency_ms"] < 200 * 20


def _cut_off_after(port: int, events_read: int) -> None:
    """What ``curl -N ... | head`` does: read the start of a stream, then close with more unread."""
    sock = socket.create_connection(("127.0.0.1", port))
    body = json.dumps(STREAM).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    received = b""
    while received.count(b"data: ") < events_read:
        got = sock.recv(4096)
        assert got, "the proxy ended the stream before the client hung up"
        received += got
    sock.close()


def test_clients_hanging_up_mid_stream_leave_no_noise_on_the_proxy_stderr(ledger_db):
    # Upstream sends its events back to back, so the proxy receives many in one read and relays
    # them without waiting: a proxy that keeps writing to the hung-up socket makes asyncio print
    # "socket.send() raised exception." for every write past the 5th.
    words = [f" w{i}" for i in range(30000)]
    events = [sse_chunk(i, w) for i, w in enumerate(words)] + [b"data: [DONE]\n\n"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TOKENCOST_"))}
    with ScriptedUpstream(events) as up:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokencost", "proxy", "--port", "0", "--upstream", up.base_url, "--db", str(ledger_db)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stderr.readline()
            assert first.startswith("tokencost proxy: http://127.0.0.1:"), first + proc.stderr.read()
            port = int(first.split()[2].rsplit(":", 1)[1].split("/")[0])
            gone_at = []
            for n in (1, 3, 10):
                up.finished.clear()
                _cut_off_after(port, n)
                assert up.finished.wait(10)
                gone_at.append(up.gone_at)
            proc.send_signal(signal.SIGTERM)  # stops serving and flushes the ledger
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read()
    assert "socket.send()" not in err
    # nothing at all after the start-up banner's second line
    assert [line for line in err.splitlines() if not line.startswith("  point clients at it:")] == [], err
    assert all(i is not None and i < len(words) for i in gone_at), ("the proxy must hang up upstream", gone_at)
    rows = ledger_rows(Path(ledger_db))
    assert len(rows) == 3  # every call cut off is still in the ledger ...
    for row in rows:  # ... with the usage of what went through, estimated
        assert (row["status"], row["error_type"], row["streamed"], row["usage_source"]) == (200, None, 1, "estimated")
        assert 1 <= row["completion_tokens"] < count_text_tokens("".join(words), "gpt-4o")


def test_sse_tap_splits_on_any_boundary_and_hides_only_the_usage_chunk():
    usage = b'data: {"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\r\n\r\n'
    stream = sse_chunk(0, "a").replace(b"\n\n", b"\r\n\r\n") + usage + b": keep-alive\n\n" + b"data: [DONE]\n\n"
    tap = SSETap(hide_usage_chunk=True)
    out = b"".join(tap.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)) + tap.finish()
    assert out == stream.replace(usage, b"")
    assert tap.usage_chunk["usage"]["completion_tokens"] == 2 and tap.hidden_events == 1
    passthrough = SSETap(hide_usage_chunk=False)
    assert b"".join(passthrough.feed(stream[i:i + 5]) for i in range(0, len(stream), 5)) == stream
    assert split_events(b"data: 1\n\ndata: 2") == ([b"data: 1\n\n"], b"data: 2")


def test_client_giving_up_on_a_non_streamed_call_still_logs_the_billed_usage(proxy, fake_openai):
    # Upstream generates (and bills) a non-streamed completion whole even if the caller left.
    fake_openai.enqueue("slow", delay=0.8)
    with pytest.raises(openai.APITimeoutError):
        openai_client(proxy.base_url, timeout=0.2).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    [row] = rows_after_flush(proxy, 1)
    assert (row["status"], row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == (200, "api", 14, 37)


def test_store_content_keeps_the_streamed_text(fake_openai, ledger_db):
    config = ProxyConfig(upstream=fake_openai.base_url, db=ledger_db, store_content=True)
    with ProxyServer(config, port=0) as srv:
        text = "".join(c.choices[0].delta.content or "" for c in openai_client(srv.base_url).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True))
        wait_for(lambda: len(srv.sink.ids) == 1)
    [row] = ledger_rows(ledger_db)
    assert row["completion_text"] == text == "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))
    assert json.loads(row["prompt_text"]) == MESSAGES
    assert row["usage_source"] == "api" and row["completion_tokens"] == 47


def test_upstream_stalling_mid_stream_times_out_and_is_logged(ledger_db):
    events = [sse_chunk(0, "Hello there"), sse_chunk(1, " never sent"), b"data: [DONE]\n\n"]
    with ScriptedUpstream(events, hold_at=1) as up, \
            ProxyServer(ProxyConfig(upstream=up.base_url, db=ledger_db, timeout=0.3), port=0) as srv:
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", srv.base_url + "/chat/completions", json=STREAM, timeout=5) as r:
                assert r.status_code == 200
                for _ in r.iter_raw():
                    pass
        wait_for(lambda: len(srv.sink.ids) == 1)
        up.release.set()
    [row] = ledger_rows(ledger_db)
    assert (row["status"], row["error_type"], row["usage_source"]) == (200, "APITimeoutError", "estimated")
    assert row["completion_tokens"] == count_text_tokens("Hello there", "gpt-4o")
    assert row["request_id"] == "req_scripted"
