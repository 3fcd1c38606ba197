"""The proxy with the real ``openai`` client, real sockets and the fake upstream replaying real bodies."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.fakeserver import iter_recorded_text, load_fixture
from tests.test_proxy_support import (  # noqa: F401  (fixtures)
    MESSAGES,
    SECRET,
    ScriptedUpstream,
    all_ledger_bytes,
    ledger_db,
    ledger_rows,
    openai_client,
    proxy,
    rows_after_flush,
)
from tokencost.proxy import ProxyConfig, parse_tags
from tokencost.runner import ProxyServer

# Expected costs, by hand from the published price (pricing/openai.csv: gpt-4o-2024-08-06 at $2.50 per
# 1M prompt tokens and $10 per 1M completion tokens since 2024-10-01, from openai.com/index/api-prompt-caching).
# 1 token = $2.50 / 1e6 = 2.5e-6 USD = 2,500,000 pUSD prompt; $10 / 1e6 = 10,000,000 pUSD completion.
# 14 prompt + 37 completion (the recorded non-streamed reply): 14 * 2,500,000 + 37 * 10,000,000
#   = 35,000,000 + 370,000,000 = 405,000,000 pUSD ($0.000405)
# 14 prompt + 47 completion (the recorded stream): 35,000,000 + 47 * 10,000,000 = 505,000,000 pUSD
GPT4O_14_37_PUSD = 405_000_000
GPT4O_14_47_PUSD = 505_000_000


def test_chat_non_streamed_is_unchanged_and_logged(proxy, fake_openai):
    direct = openai_client(fake_openai.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    via = openai_client(proxy.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert via.model_dump() == direct.model_dump()
    assert fake_openai.received[-1]["json"] == {"model": "gpt-4o", "messages": MESSAGES}

    [row] = rows_after_flush(proxy, 1)
    assert (row["endpoint"], row["model_requested"], row["model"]) == ("chat.completions", "gpt-4o", "gpt-4o-2024-08-06")
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (14, 37, 51)
    assert row["usage_source"] == "api" and row["status"] == 200 and row["error_type"] is None
    assert row["total_cost_pusd"] == GPT4O_14_37_PUSD
    assert row["estimated_prompt_tokens"] == 14  # what the real API reported for this very request
    assert row["via"] == "proxy" and row["streamed"] == 0
    assert row["request_id"].startswith("req_fake")
    assert json.loads(row["tags"]) == {"team": "qa"}
    assert row["prompt_text"] is None and row["completion_text"] is None


def test_stream_without_usage_request_hides_the_added_usage_chunk(proxy, fake_openai):
    client = openai_client(proxy.base_url)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks), "the client must not see the usage chunk it did not ask for"
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))
    sent = fake_openai.received[-1]["json"]
    assert sent["stream_options"] == {"include_usage": True}

    [row] = rows_after_flush(proxy, 1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (14, 47, "api")
    assert row["streamed"] == 1 and row["status"] == 200
    assert row["total_cost_pusd"] == GPT4O_14_47_PUSD


def test_stream_with_usage_requested_passes_it_through(proxy, fake_openai):
    client = openai_client(proxy.base_url)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 47
    assert fake_openai.received[-1]["json"]["stream_options"] == {"include_usage": True}
    [row] = rows_after_flush(proxy, 1)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (14, 47, "api")


def test_other_endpoints_logged_with_reported_usage(proxy, fake_openai):
    client = openai_client(proxy.base_url)
    client.responses.create(model="gpt-4o-mini", input="What's the weather like in SF?")
    events = list(client.responses.create(model="gpt-4.1", input="Tell me a three sentence bedtime story", stream=True))
    assert events[-1].type == "response.completed"
    client.completions.create(model="gpt-3.5-turbo-instruct",
                              prompt="Translate the following English text to French: 'Hello, world!'")
    emb = client.embeddings.create(model="text-embedding-ada-002", input="The food was delicious and the waiter...")
    assert len(emb.data[0].embedding) == 1536

    rows = rows_after_flush(proxy, 4)
    got = [(r["endpoint"], r["model"], r["prompt_tokens"], r["completion_tokens"], r["streamed"], r["usage_source"])
           for r in rows]
    assert got == [
        ("responses", "gpt-4o-mini-2024-07-18", 14, 50, 0, "api"),
        ("responses", "gpt-4.1-2025-04-14", 37, 11, 1, "api"),
        ("completions", "gpt-3.5-turbo-instruct", 13, 5, 0, "api"),
        ("embeddings", "text-embedding-ada-002", 8, 0, 0, "api"),
    ]
    # nothing was added to the Responses stream request (it always reports usage)
    assert "stream_options" not in fake_openai.requests_to("/responses")[-1]["json"]


@pytest.mark.parametrize(
    ("scenario", "status", "exc", "error_type"),
    [
        ("error_429", 429, openai.RateLimitError, "RateLimitError"),
        ("error_500", 500, openai.InternalServerError, "InternalServerError"),
        ("error_400", 400, openai.BadRequestError, "BadRequestError"),
    ],
)
def test_errors_pass_through_and_are_logged_as_failed(proxy, fake_openai, scenario, status, exc, error_type):
    fake_openai.enqueue(scenario)
    with pytest.raises(exc) as info:
        openai_client(proxy.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.body == json.loads(load_fixture(f"{scenario}_{_suffix(scenario)}.json"))["error"]
    [row] = rows_after_flush(proxy, 1)
    assert (row["status"], row["error_type"]) == (status, error_type)
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_cost_pusd"]) == (0, 0, 0)
    assert row["usage_source"] is None


def _suffix(scenario: str) -> str:
    return {"error_429": "rate_limit", "error_500": "server_error", "error_400": "context_length"}[scenario]


def test_tags_header_is_read_then_stripped(proxy, fake_openai):
    client = openai_client(proxy.base_url, default_headers={"X-Tokencost-Tags": "user=alice, feature=search,note=a%2Cb"})
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert not any(k.startswith("x-tokencost") for k in fake_openai.received[-1]["headers"])
    [row] = rows_after_flush(proxy, 1)
    assert json.loads(row["tags"]) == {"team": "qa", "user": "alice", "feature": "search", "note": "a,b"}


def test_parse_tags_keeps_well_formed_pairs_and_drops_the_rest():
    # KEY=VALUE, comma separated; KEY is [A-Za-z0-9_.:-]+, VALUE is percent-decoded and may be empty
    assert parse_tags("user=alice, feature = search,note=a%2Cb,empty=,") == {
        "user": "alice", "feature": "search", "note": "a,b", "empty": ""}
    assert parse_tags("ok.v1:x-y_z=yes,eq=a=b") == {"ok.v1:x-y_z": "yes", "eq": "a=b"}
    assert parse_tags("===,,a") == {}  # the review's example: once stored as {"a": ""}
    assert parse_tags("flag,bad key=x,=v,k%41=1,é=1,user=bob") == {"user": "bob"}
    assert parse_tags("") == parse_tags(" , ") == {}


def test_authorization_goes_upstream_and_never_into_the_ledger(ledger_db, fake_openai):
    with ScriptedUpstream([]) as up, ProxyServer(ProxyConfig(upstream=up.base_url, db=ledger_db), port=0) as srv:
        got = httpx.get(srv.base_url + "/echo?x=1", headers={"Authorization": f"Bearer {SECRET}",
                                                             "X-Tokencost-Tags": "user=bob", "Connection": "keep-alive"})
    assert got.status_code == 200 and got.headers["x-upstream"] == "scripted"
    echoed = dict(got.json()["headers"])
    assert echoed["authorization"] == f"Bearer {SECRET}"
    assert got.json()["path"] == "/v1/echo?x=1"
    assert "x-tokencost-tags" not in echoed
    assert echoed["host"] == f"127.0.0.1:{up.port}"

    # A full tracked session (streamed, failed, other endpoints): the key is in no file we wrote.
    with ProxyServer(ProxyConfig(upstream=fake_openai.base_url, db=ledger_db, store_content=True), port=0) as srv:
        client = openai_client(srv.base_url)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        fake_openai.enqueue("error_429")
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(ledger_rows(ledger_db)) == 3
    data = all_ledger_bytes(ledger_db)
    assert b"weather" in data  # store_content=True: the prompt is there, so we did look in the right bytes
    assert SECRET.encode() not in data and b"Bearer" not in data and b"authorization" not in data.lower()


def test_headers_named_in_connection_are_not_forwarded_either_way(ledger_db):
    with ScriptedUpstream([]) as up, ProxyServer(ProxyConfig(upstream=up.base_url, db=ledger_db), port=0) as srv:
        got = httpx.get(srv.base_url + "/echo?hop=1", headers={
            "Connection": "keep-alive, X-Client-Hop", "X-Client-Hop": "client-to-proxy", "X-End-To-End": "kept"})
    echoed = dict(got.json()["headers"])
    assert echoed["x-end-to-end"] == "kept"  # an ordinary header still goes through
    assert "x-client-hop" not in echoed and "connection" not in echoed
    assert got.headers["x-upstream"] == "scripted"
    assert "x-hop-only" not in got.headers  # upstream named it in its Connection header


def test_unbilled_paths_and_any_method_are_forwarded_not_logged(proxy, fake_openai):
    for method, path in (("GET", "/models"), ("DELETE", "/files/file-abc"), ("PROPFIND", "/x"),
                         ("GET", "/chat/completions")):  # GET lists stored completions: not billed
        direct = httpx.request(method, fake_openai.base_url + path)
        via = httpx.request(method, proxy.base_url + path)
        assert (via.status_code, via.content) == (direct.status_code, direct.content), (method, path)
    assert via.status_code != 405  # the proxy itself refuses no method
    assert rows_after_flush(proxy, 0) == []


def test_path_without_v1_prefix_is_relative_to_the_upstream_base(proxy, fake_openai):
    base = proxy.base_url[: -len("/v1")]
    r = httpx.post(base + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 14
    assert fake_openai.received[-1]["path"] == "/v1/chat/completions"
    assert len(rows_after_flush(proxy, 1)) == 1


def test_malformed_json_is_forwarded_as_is_and_upstreams_error_returned(proxy, fake_openai):
    fake_openai.enqueue("error_400")
    bad = b'{"model": "gpt-4o", "messages": [ oops'
    r = httpx.post(proxy.base_url + "/chat/completions", content=bad,
                   headers={"content-type": "application/json", "authorization": f"Bearer {SECRET}"})
    assert r.status_code == 400
    assert r.content == load_fixture("error_400_context_length.json").encode()
    assert fake_openai.received[-1]["json"] == bad.decode()  # byte for byte what the client sent
    # still serving
    ok = openai_client(proxy.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert ok.usage.prompt_tokens == 14
    rows = rows_after_flush(proxy, 2)
    assert [(r["status"], r["error_type"], r["model_requested"]) for r in rows] == [
        (400, "BadRequestError", None), (200, None, "gpt-4o")]


def test_fifty_concurrent_clients_exact_rows(proxy, fake_openai):
    errors: list[BaseException] = []
    texts: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def one(i: int) -> None:
        try:
            client = openai_client(proxy.base_url, default_headers={"X-Tokencost-Tags": f"user=u{i}"})
            start.wait()
            if i % 2:
                text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True))
            else:
                text = client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content
            with lock:
                texts.append(text)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(texts) == 50
    rows = rows_after_flush(proxy, 50)
    assert len(rows) == 50
    assert sorted(json.loads(r["tags"])["user"] for r in rows) == sorted(f"u{i}" for i in range(50))
    assert sum(r["streamed"] for r in rows) == 25
    assert {(r["prompt_tokens"], r["completion_tokens"]) for r in rows} == {(14, 37), (14, 47)}
    total = sum(Decimal(r["total_cost_pusd"]) for r in rows)
    assert total == 25 * GPT4O_14_37_PUSD + 25 * GPT4O_14_47_PUSD == 22_750_000_000
    assert len({r["id"] for r in rows}) == 50


def test_upstream_down_gives_502_and_a_failed_row(ledger_db):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with ProxyServer(ProxyConfig(upstream=f"http://127.0.0.1:{port}/v1", db=ledger_db), port=0) as srv:
        with pytest.raises(openai.APIStatusError) as info:
            openai_client(srv.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert info.value.status_code == 502
        assert info.value.body["code"] == "upstream_unreachable"
        assert "could not be reached" in info.value.body["message"]
        r = httpx.get(srv.base_url + "/models")  # unbilled paths fail the same way, unlogged
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
    [row] = ledger_rows(ledger_db)
    assert (row["status"], row["error_type"], row["total_cost_pusd"]) == (None, "APIConnectionError", 0)


def test_upstream_timeout_gives_504_and_a_failed_row(ledger_db, fake_openai):
    fake_openai.enqueue("slow", delay=2.0)
    config = ProxyConfig(upstream=fake_openai.base_url, db=ledger_db, timeout=0.3)
    with ProxyServer(config, port=0) as srv:
        with pytest.raises(openai.APIStatusError) as info:
            openai_client(srv.base_url).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert info.value.status_code == 504 and info.value.body["code"] == "upstream_timeout"
    [row] = ledger_rows(ledger_db)
    assert (row["status"], row["error_type"]) == (None, "APITimeoutError")


def test_refusing_budget_answers_429_before_sending(proxy, fake_openai):
    from tokencost.budgets import set_budget

    set_budget(proxy.sink.path, "tiny", limit="0.000000001", period="day", action="refuse")
    calls_before = len(fake_openai.received)
    raw = httpx.post(proxy.base_url + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert raw.status_code == 429 and raw.headers["x-should-retry"] == "false"
    err = raw.json()["error"]
    assert err["code"] == "tokencost_budget_exceeded" and "budget 'tiny'" in err["message"]
    with pytest.raises(openai.RateLimitError):
        openai_client(proxy.base_url, max_retries=2).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(fake_openai.received) == calls_before  # nothing went upstream, not even retries
    assert rows_after_flush(proxy, 0) == []


def test_proxy_rows_match_wrapper_rows(proxy, fake_openai, tmp_path: Path):
    from tokencost.wrap import track

    wrapped_db = tmp_path / "wrapped.db"
    wrapped = track(openai_client(fake_openai.base_url), db=wrapped_db)
    via = openai_client(proxy.base_url)
    for client in (wrapped, via):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        fake_openai.enqueue("error_429")
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        fake_openai.enqueue("stream_cut", after=5)
        with pytest.raises(openai.APIConnectionError):
            list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        client.embeddings.create(model="text-embedding-ada-002", input="The food was delicious and the waiter...")
    keys = ("endpoint", "model_requested", "model", "prompt_tokens", "completion_tokens", "cached_tokens",
            "reasoning_tokens", "total_tokens", "prompt_cost_pusd", "completion_cost_pusd", "total_cost_pusd",
            "price_id", "usage_source", "estimated_prompt_tokens", "status", "error_type", "streamed")
    ours = [{k: r[k] for k in keys} for r in rows_after_flush(proxy, 5)]
    theirs = [{k: r[k] for k in keys} for r in ledger_rows(wrapped_db)]
    assert len(ours) == 5 and ours == theirs
