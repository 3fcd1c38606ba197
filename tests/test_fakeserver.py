"""The fake server speaks the real API's wire format: the real openai client is the judge."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest

from tests.fakeserver import FIXTURES, FakeOpenAI, iter_recorded_text

MSG = [{"role": "user", "content": "What's the weather like in SF?"}]


def client(srv: FakeOpenAI, **kw) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-not-a-real-key", base_url=srv.base_url, max_retries=0, **kw)


def test_chat_non_streamed(fake_openai: FakeOpenAI) -> None:
    r = client(fake_openai).chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.model == "gpt-4o-2024-08-06"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (14, 37, 51)
    assert r.choices[0].message.content.startswith("I'm unable to provide real-time weather updates.")
    assert r._request_id and r._request_id.startswith("req_")
    req = fake_openai.received[-1]
    assert req["path"] == "/v1/chat/completions" and req["json"]["messages"] == MSG


def test_chat_stream_usage_only_when_asked(fake_openai: FakeOpenAI) -> None:
    c = client(fake_openai)
    plain = list(c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert all(ch.usage is None for ch in plain)
    assert plain[-1].choices[0].finish_reason == "stop"
    text = "".join(ch.choices[0].delta.content or "" for ch in plain)
    assert text == "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))

    asked = list(c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                           stream_options={"include_usage": True}))
    assert len(asked) == len(plain) + 1
    assert asked[-1].choices == []
    assert (asked[-1].usage.prompt_tokens, asked[-1].usage.completion_tokens) == (14, 47)


def test_chat_stream_scenario_never_sends_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("chat_stream")
    chunks = list(client(fake_openai).chat.completions.create(
        model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}))
    assert chunks and all(ch.usage is None for ch in chunks)


def test_responses_completions_embeddings(fake_openai: FakeOpenAI) -> None:
    c = client(fake_openai)
    r = c.responses.create(model="gpt-4o-mini", input="What's the weather like in SF?")
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.input_tokens_details.cached_tokens) == (14, 50, 0)
    events = list(c.responses.create(model="gpt-4.1", input="Hello!", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert (events[-1].response.usage.input_tokens, events[-1].response.usage.output_tokens) == (37, 11)
    comp = c.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (13, 5)
    emb = c.embeddings.create(model="text-embedding-ada-002", input="The food was delicious and the waiter...")
    recorded = json.loads((FIXTURES / "embeddings_ada-002.json").read_text())["data"][0]["embedding"]
    assert len(emb.data[0].embedding) == 1536
    # the client asked for base64 (float32 on the wire), so compare at float32 precision
    assert emb.data[0].embedding[:3] == pytest.approx(recorded[:3], rel=1e-6)
    assert emb.usage.prompt_tokens == 8


@pytest.mark.parametrize(
    "scenario,exc,status,code",
    [
        ("error_429", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("error_500", openai.InternalServerError, 500, None),
        ("error_400", openai.BadRequestError, 400, "context_length_exceeded"),
    ],
)
def test_errors(fake_openai: FakeOpenAI, scenario, exc, status, code) -> None:
    fake_openai.enqueue(scenario)
    with pytest.raises(exc) as info:
        client(fake_openai).chat.completions.create(model="gpt-4", messages=MSG)
    assert info.value.status_code == status
    assert info.value.code == code
    assert info.value.request_id.startswith("req_")


def test_default_retries_hit_the_server_again(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("error_500", times=2, headers={"retry-after-ms": "1"})
    c = openai.OpenAI(api_key="sk-test", base_url=fake_openai.base_url, max_retries=2)
    r = c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.usage.total_tokens == 51
    assert len(fake_openai.received) == 3


def test_stream_cut_raises_midway(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("stream_cut", after=4)
    got = []
    with pytest.raises(openai.APIConnectionError):
        for ch in client(fake_openai).chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
            got.append(ch)
    assert len(got) == 4


def test_slow_and_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue("slow", delay=1.0)
    with pytest.raises(openai.APITimeoutError):
        client(fake_openai, timeout=0.2).chat.completions.create(model="gpt-4o", messages=MSG)


def test_authorization_is_never_recorded(fake_openai: FakeOpenAI) -> None:
    c = openai.OpenAI(api_key="sk-proj-SECRETSECRET", base_url=fake_openai.base_url, max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert "authorization" not in fake_openai.received[0]["headers"]
    assert "SECRETSECRET" not in repr(fake_openai.received)


def test_async_client_streams(fake_openai: FakeOpenAI) -> None:
    async def go() -> list:
        c = openai.AsyncOpenAI(api_key="sk-test", base_url=fake_openai.base_url, max_retries=0)
        stream = await c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True})
        return [ch async for ch in stream]

    chunks = asyncio.run(go())
    assert chunks[-1].usage.completion_tokens == 47


def test_standalone_mode_prints_base_url_and_serves() -> None:
    script = Path(__file__).with_name("fakeserver.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
        root = base[: -len("/v1")]
        req = urllib.request.Request(root + "/_fake/enqueue", data=b'{"scenario": "error_429"}', method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(api_key="sk-x", base_url=base, max_retries=0).chat.completions.create(
                model="gpt-4", messages=MSG)
        received = json.loads(urllib.request.urlopen(root + "/_fake/received", timeout=5).read())
        assert [r["path"] for r in received] == ["/v1/chat/completions"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_gpt35_requests_get_the_gpt35_recording(fake_openai: FakeOpenAI) -> None:
    r = client(fake_openai).chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Say this is a test!"}])
    assert r.model == "gpt-3.5-turbo-0125"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (13, 5)
    assert r.choices[0].message.content == "This is a test!"
