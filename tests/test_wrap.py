"""tokencost.track() on a real openai.OpenAI client against the local fake server (real sockets).

Rows are read back from the SQLite file with plain sqlite3, not through tokencost.
"""

from __future__ import annotations

import gc
import json
import socket
import warnings
from pathlib import Path

import openai
import pytest

from tests.fakeserver import FakeOpenAI, iter_recorded_text
from tokencost.tagging import tags
from tokencost.wrap import track
from tests.ledger_helpers import call_rows

KEY = "sk-test-DO-NOT-STORE-0123456789abcdef"
MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What's the weather in San Francisco?"}]
STREAM_TEXT = "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))


rows = call_rows


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def raw(fake_openai: FakeOpenAI) -> openai.OpenAI:
    """An untracked client, for comparing what the caller sees."""
    return openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0)


@pytest.fixture
def client(fake_openai: FakeOpenAI, db: Path) -> openai.OpenAI:
    return track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0), db=db)


def test_track_returns_the_same_client_and_rejects_other_objects(fake_openai, db):
    c = openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url)
    assert track(c, db=db) is c
    with pytest.raises(TypeError, match="openai.OpenAI"):
        track(object(), db=db)


def test_non_streamed_chat_is_logged_with_api_usage_and_cost(client, raw, db):
    got = client.chat.completions.create(model="gpt-4o", messages=MSGS)
    want = raw.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert type(got) is type(want) and got.model_dump() == want.model_dump()
    [row] = rows(db)
    assert row["endpoint"] == "chat.completions" and row["via"] == "wrap" and row["streamed"] == 0
    assert (row["model_requested"], row["model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 37)
    assert row["usage_source"] == "api" and row["status"] == 200 and row["error_type"] is None
    assert row["request_id"].startswith("req_fake")
    # gpt-4o (2024-08-06 prices): $2.50 / 1M prompt, $10 / 1M completion, in picodollars
    assert row["total_cost_pusd"] == 14 * 2_500_000 + 37 * 10_000_000
    assert row["estimated_prompt_tokens"] is None or row["estimated_prompt_tokens"] > 0
    assert row["latency_ms"] > 0


def test_stream_without_usage_asked_hides_the_usage_chunk(client, raw, fake_openai, db):
    got = list(client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    want = list(raw.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    # we asked the server for usage on the caller's behalf ...
    sent = fake_openai.requests_to("/chat/completions")
    assert sent[0]["json"]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in sent[1]["json"]
    # ... yet the caller sees exactly the chunks an untracked client sees: none with empty choices
    assert [c.model_dump() for c in got] == [c.model_dump() for c in want]
    assert all(c.choices for c in got)
    [row] = rows(db)
    assert row["streamed"] == 1 and row["usage_source"] == "api"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 47)


def test_stream_with_usage_asked_passes_the_usage_chunk_through(client, raw, fake_openai, db):
    opts = {"include_usage": True}
    got = list(client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, stream_options=opts))
    want = list(raw.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True, stream_options=opts))
    assert [c.model_dump() for c in got] == [c.model_dump() for c in want]
    assert got[-1].choices == [] and got[-1].usage.completion_tokens == 47
    [row] = rows(db)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (14, 47, "api")


def test_stream_type_and_context_manager_unchanged(client):
    stream = client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    assert type(stream) is openai.Stream
    with stream as s:
        assert s is stream
        text = "".join(c.choices[0].delta.content or "" for c in s)
    assert text == STREAM_TEXT


def test_server_ignoring_include_usage_is_logged_as_estimated(client, fake_openai, db):
    fake_openai.enqueue("chat_stream")
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o", messages=MSGS, stream=True))
    assert text == STREAM_TEXT
    [row] = rows(db)
    assert row["usage_source"] == "estimated" and row["status"] == 200
    assert row["completion_tokens"] > 0


def test_stream_with_invalid_usage_counts_the_text_instead(client, fake_openai, db):
    fake_openai.enqueue("chat_stream_usage", fixture="chat_stream_gpt-4o_invalid_usage.sse")
    with pytest.warns(UserWarning, match="invalid usage"):
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", messages=MSGS, stream=True))
    assert text == STREAM_TEXT
    [row] = rows(db)
    assert row["usage_source"] == "estimated"
    assert row["prompt_tokens"] >= 0
    # the same reply streamed with valid usage reported 47 completion tokens: counted from the text
    # received instead of the invalid block, it must come out positive (the bug stored 0 here)
    assert row["completion_tokens"] > 0


@pytest.mark.parametrize("how", ["break_and_drop", "close", "with_block"])
def test_abandoned_stream_is_logged_once_from_the_text_received(client, db, how):
    stream = client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
    seen = []
    if how == "with_block":
        with stream:
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
                if len(seen) == 4:
                    break
    else:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
            if len(seen) == 4:
                break
        if how == "close":
            stream.close()
            stream.close()
    assert len(rows(db)) == (0 if how == "break_and_drop" else 1)
    del stream, chunk
    gc.collect()
    [row] = rows(db)
    assert row["usage_source"] == "estimated" and row["streamed"] == 1 and row["status"] == 200
    received = "".join(seen)
    assert received and STREAM_TEXT.startswith(received)
    # "I'm unable to" is 4 tokens in o200k_base; the estimate counts only what arrived
    from tokencost.encodings import get_encoding

    assert row["completion_tokens"] == len(get_encoding("o200k_base").encode(received))


def test_stream_cut_midway_is_logged_and_the_error_reaches_the_caller(client, raw, fake_openai, db):
    def read(c, seen):
        for chunk in c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
            seen.append(chunk.choices[0].delta.content or "")

    fake_openai.enqueue("stream_cut", after=6)
    fake_openai.enqueue("stream_cut", after=6)
    seen: list[str] = []
    with pytest.raises(Exception) as got:
        read(client, seen)
    with pytest.raises(Exception) as want:
        read(raw, [])
    # whatever the SDK raises for a dropped connection (openai 3.x: APIConnectionError; older
    # releases let httpx's RemoteProtocolError through) reaches the caller as is
    assert type(got.value) is type(want.value)
    assert isinstance(got.value, (openai.APIConnectionError, __import__("httpx").HTTPError)) or \
        type(got.value).__name__ == "RemoteProtocolError"
    [row] = rows(db)
    assert row["error_type"] == type(got.value).__name__ and row["usage_source"] == "estimated"
    assert row["status"] == 200 and row["streamed"] == 1
    from tokencost.encodings import get_encoding

    assert row["completion_tokens"] == len(get_encoding("o200k_base").encode("".join(seen))) > 0


@pytest.mark.parametrize(
    ("scenario", "exc_type", "status"),
    [("error_429", openai.RateLimitError, 429), ("error_500", openai.InternalServerError, 500),
     ("error_400", openai.BadRequestError, 400)],
)
def test_http_errors_are_logged_with_zero_cost_and_reach_the_caller_unchanged(client, raw, fake_openai, db,
                                                                              scenario, exc_type, status):
    fake_openai.enqueue(scenario)
    fake_openai.enqueue(scenario)
    with pytest.raises(exc_type) as got:
        client.chat.completions.create(model="gpt-4o", messages=MSGS)
    with pytest.raises(exc_type) as want:
        raw.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert type(got.value) is type(want.value)
    assert got.value.status_code == want.value.status_code == status
    assert got.value.body == want.value.body and str(got.value) == str(want.value)
    [row] = rows(db)
    assert row["status"] == status and row["error_type"] == exc_type.__name__
    assert row["prompt_tokens"] == 0 and row["completion_tokens"] == 0
    assert row["total_cost_pusd"] == 0
    assert row["request_id"] == got.value.request_id


def test_the_exception_object_is_the_sdks_own(fake_openai, db):
    """Identity, not just equality: catch what the SDK raised beneath the hook and compare."""
    c = openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0)
    seen = []
    sdk_request = c.request

    def spy(*a, **kw):
        try:
            return sdk_request(*a, **kw)
        except Exception as exc:
            seen.append(exc)
            raise

    c.request = spy  # the SDK's own method, seen from below the tracking hook
    track(c, db=db)
    fake_openai.enqueue("error_429")
    with pytest.raises(openai.RateLimitError) as got:
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert seen == [got.value] and seen[0] is got.value
    assert len(rows(db)) == 1


def test_timeout_is_logged_without_status(client, fake_openai, db):
    fake_openai.enqueue("slow", delay=2.0)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="gpt-4o", messages=MSGS)
    [row] = rows(db)
    assert row["status"] is None and row["error_type"] == "APITimeoutError" and row["total_cost_pusd"] == 0


def test_connection_refused_is_logged(db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: nothing listens there
    c = track(openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0), db=db)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    [row] = rows(db)
    assert row["status"] is None and row["error_type"] == "APIConnectionError"


def test_sdk_retries_are_one_row(fake_openai, db):
    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=2), db=db)
    fake_openai.enqueue("error_429", headers={"retry-after-ms": "1"})
    c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(fake_openai.requests_to("/chat/completions")) == 2
    [row] = rows(db)
    assert row["status"] == 200 and row["completion_tokens"] == 37


def test_responses_completions_embeddings(client, raw, db):
    r = client.responses.create(model="gpt-4o-mini", input="Tell me a three sentence bedtime story.")
    assert type(r) is type(raw.responses.create(model="gpt-4o-mini", input="x"))
    events = list(client.responses.create(model="gpt-4.1", input="Say hi", stream=True))
    assert events[-1].type == "response.completed"
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")
    e = client.embeddings.create(model="text-embedding-ada-002", input="The food was delicious")
    assert len(e.data[0].embedding) > 100
    got = [(r["endpoint"], r["streamed"], r["prompt_tokens"], r["completion_tokens"], r["usage_source"])
           for r in rows(db)]
    assert got == [
        ("responses", 0, 14, 50, "api"),
        ("responses", 1, 37, 11, "api"),
        ("completions", 0, 13, 5, "api"),
        ("embeddings", 0, 8, 0, "api"),
    ]


def test_with_raw_response_and_with_streaming_response(client, db):
    raw_resp = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)
    assert raw_resp.headers["x-request-id"].startswith("req_fake")
    assert raw_resp.parse().usage.completion_tokens == 37
    with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MSGS) as resp:
        assert resp.parse().usage.prompt_tokens == 14
    raw_stream = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS, stream=True)
    chunks = list(raw_stream.parse())
    assert chunks and all(c.choices for c in chunks)
    got = [(r["streamed"], r["prompt_tokens"], r["completion_tokens"], r["usage_source"]) for r in rows(db)]
    assert got == [(0, 14, 37, "api"), (0, 14, 37, "api"), (1, 14, 47, "api")]


def test_stream_helper_and_parse(client, db):
    if not hasattr(client.chat.completions, "stream"):
        pytest.skip("chat.completions.stream() is in this openai release's beta namespace")
    with client.chat.completions.stream(model="gpt-4o", messages=MSGS) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == STREAM_TEXT
    [row] = rows(db)
    assert row["streamed"] == 1 and row["completion_tokens"] == 47


def test_with_options_copy_is_tracked_into_the_same_ledger(client, db):
    client.with_options(timeout=30).chat.completions.create(model="gpt-4o", messages=MSGS)
    client.copy(max_retries=1).chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(rows(db)) == 2


def test_other_endpoints_are_not_logged(client, fake_openai, db):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert rows(db) == []


def test_tags_from_track_and_context_manager(fake_openai, db):
    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db, tags={"app": "demo"})
    c.chat.completions.create(model="gpt-4o", messages=MSGS)
    with tags(user="u42", feature="search"):
        with tags(feature="rerank"):
            stream = c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    list(stream)  # consumed outside the block: still filed under the tags it was created with

    @tags(feature="decorated")
    def call():
        return c.embeddings.create(model="text-embedding-ada-002", input="x")

    call()
    got = [json.loads(r["tags"] or "{}") for r in rows(db)]
    assert got == [
        {"app": "demo"},
        {"app": "demo", "user": "u42", "feature": "rerank"},  # the stream started first (rows sort by start)
        {"app": "demo", "user": "u42", "feature": "search"},
        {"app": "demo", "feature": "decorated"},
    ]
    assert [r["streamed"] for r in rows(db)] == [0, 1, 0, 0]
    # the tags never reach the API
    assert all("u42" not in json.dumps(r["json"]) for r in fake_openai.received)


def test_no_prompt_text_and_no_key_in_the_db_by_default(client, db):
    secret = "my-very-private-question-7f3a"
    msgs = [{"role": "user", "content": secret}]
    client.chat.completions.create(model="gpt-4o", messages=msgs)
    list(client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True))
    [a, b] = rows(db)
    assert a["prompt_text"] is None and a["completion_text"] is None and b["prompt_text"] is None
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    blob = b"".join(p.read_bytes() for p in files)
    assert secret.encode() not in blob
    assert b"San Francisco" not in blob  # nor the reply text
    assert KEY.encode() not in blob and b"Bearer" not in blob


def test_store_content_keeps_the_text(fake_openai, db):
    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db, store_content=True)
    c.chat.completions.create(model="gpt-4o", messages=MSGS)
    list(c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    a, b = rows(db)
    assert "San Francisco" in a["prompt_text"] and "weather" in a["completion_text"]
    assert b["completion_text"] == STREAM_TEXT
    blob = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert KEY.encode() not in blob


def test_logging_failure_never_breaks_the_call(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the fallback spool goes
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the ledger's directory should be")
    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url), db=blocked / "ledger.db")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = c.chat.completions.create(model="gpt-4o", messages=MSGS)
        s = list(c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
    assert r.usage.completion_tokens == 37 and len(s) == 49 and all(x.choices for x in s)  # usage chunk hidden
    assert any("tokencost" in str(w.message) for w in caught)  # said so, once at least
    spooled = [json.loads(line) for p in (tmp_path / "cache").rglob("*.spool.jsonl")
               for line in p.read_text().splitlines()]
    assert [(x["streamed"], x["completion_tokens"]) for x in spooled] == [(0, 37), (1, 47)]


def test_budgets_refuse_before_sending_and_warn(fake_openai, db):
    from tokencost.budgets import BudgetWarning, set_budget
    from tokencost.errors import BudgetExceeded

    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db)
    with tags(team="search"):
        c.chat.completions.create(model="gpt-4o", messages=MSGS)  # team search spends $0.000405
    set_budget(db, "tiny", limit="0.0004", period="day", tags={"team": "search"}, action="refuse")
    set_budget(db, "soft", limit="0.0001", period="day", models=["gpt-4o"], action="warn")
    sent = len(fake_openai.received)
    with tags(team="search"), pytest.raises(BudgetExceeded, match="tiny"):
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(fake_openai.received) == sent  # refused before anything went out, and not logged
    assert len(rows(db)) == 1
    with pytest.warns(BudgetWarning, match="soft"):
        c.chat.completions.create(model="gpt-4o", messages=MSGS)  # other team: only the warning
    assert len(rows(db)) == 2


def test_an_exceeded_budget_refuses_even_when_prices_cannot_be_read(fake_openai, db, tmp_path, monkeypatch):
    from tokencost.budgets import set_budget
    from tokencost.errors import BudgetExceeded

    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db)
    c.chat.completions.create(model="gpt-4o", messages=MSGS)  # spends $0.000405
    set_budget(db, "cap", limit="0.0001", period="day", action="refuse")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("TOKENCOST_PRICES", str(not_a_dir / "prices.csv"))  # stat() -> NotADirectoryError
    sent = len(fake_openai.received)
    with pytest.raises(BudgetExceeded, match="cap"):
        c.chat.completions.create(model="gpt-4o", messages=MSGS)
    assert len(fake_openai.received) == sent


def test_pre_call_estimate_is_recorded_next_to_the_api_count(client, db):
    # the recorded reply's request (tests/fixtures/openai/SOURCES.md): the API billed 14 prompt tokens
    recorded = [{"role": "user", "content": "What's the weather like in SF?"}]
    client.chat.completions.create(model="gpt-4o", messages=recorded)
    list(client.chat.completions.create(model="gpt-4o", messages=recorded, stream=True))
    for row in rows(db):
        assert row["prompt_tokens"] == 14 == row["estimated_prompt_tokens"]


def test_small_prompts_are_counted_in_place_and_big_ones_on_the_helper(client, db, monkeypatch):
    import tokencost._precall as precall
    from tokencost.counting import count_prompt_tokens

    handed = []
    real_helper = precall._helper
    monkeypatch.setattr(precall, "_helper", lambda: handed.append(1) or real_helper())
    recorded = [{"role": "user", "content": "What's the weather like in SF?"}]
    client.chat.completions.create(model="gpt-4o", messages=recorded)
    assert handed == []  # a short prompt: no thread hand-off
    big = [{"role": "user", "content": "Summarise this report. " + "The quarterly numbers went up. " * 120}]
    client.chat.completions.create(model="gpt-4o", messages=big)
    assert handed == [1]  # ~3,700 characters never counted before: counted while on the wire
    client.chat.completions.create(model="gpt-4o", messages=big)
    assert handed == [1]  # the same text again is remembered: counted in place
    small, first, again = rows(db)
    assert small["estimated_prompt_tokens"] == 14
    assert first["estimated_prompt_tokens"] == again["estimated_prompt_tokens"] == count_prompt_tokens(big, "gpt-4o")


def test_new_text_chars_skips_remembered_and_short_strings():
    from tokencost import _memo
    from tokencost.counting import count_text_tokens
    from tokencost._precall import INLINE_CHARS as _INLINE_CHARS
    from tokencost._precall import new_text_chars as _new_text_chars

    seen = "An old message that the memo has already counted, long enough to matter."
    count_text_tokens(seen, "gpt-4o", memo=True)
    new = "A brand new message nobody has counted yet, also long enough to matter."
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": seen}, {"role": "user", "content": new}]}
    assert _new_text_chars(body) == len(new)
    huge = {"messages": [{"role": "user", "content": "word " * 1_000}]}
    assert _new_text_chars(huge) > _INLINE_CHARS
    assert _new_text_chars({"input": [[1, 2]] * 2_000}) > _INLINE_CHARS  # too big to walk: helper

    def tools():  # built afresh on every call, as many apps do
        return [{"type": "function", "function": {"name": f"tool_{i}", "description": f"Tool {i} does " + "a thing " * 60,
                                                  "parameters": {"type": "object", "properties": {}}}} for i in range(5)]

    first = _new_text_chars({"messages": [{"role": "user", "content": "hi"}], "tools": tools()})
    again = _new_text_chars({"messages": [{"role": "user", "content": "hi"}], "tools": tools()})
    assert first > _INLINE_CHARS and again == 0  # a schema seen before is not new text
    big = [{"type": "function", "function": {"name": f"big_{i}", "description": f"Big tool {i}: " + "step " * 2_000}}
           for i in range(8)]  # ~80k characters: the whole schema is marked seen on its first call
    assert _new_text_chars({"tools": big}) > _INLINE_CHARS
    assert _new_text_chars({"tools": big}) == 0
    many = [{"role": "user", "content": f"m{i}"} for i in range(6_000)]  # short, but very many
    assert _new_text_chars({"messages": many}) > _INLINE_CHARS
    _memo.clear()
