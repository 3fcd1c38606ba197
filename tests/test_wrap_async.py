"""tokencost.track() on openai.AsyncOpenAI against the local fake server (real sockets)."""

from __future__ import annotations

import asyncio
import gc
import json

import openai
import pytest

from tests.fakeserver import iter_recorded_text
from tests.test_wrap import KEY, MSGS, rows
from tokencost.tagging import tags
from tokencost.wrap import track

STREAM_TEXT = "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))


def run(coro):
    return asyncio.run(coro)


def test_async_non_streamed_and_streamed(fake_openai, tmp_path):
    db = tmp_path / "l.db"

    async def main():
        async with track(openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0), db=db) as c:
            assert isinstance(c, openai.AsyncOpenAI)
            r = await c.chat.completions.create(model="gpt-4o", messages=MSGS)
            s = await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
            assert type(s) is openai.AsyncStream
            chunks = [ch async for ch in s]
            asked = await c.chat.completions.create(
                model="gpt-4o", messages=MSGS, stream=True, stream_options={"include_usage": True})
            asked_chunks = [ch async for ch in asked]
            return r, chunks, asked_chunks

    r, chunks, asked_chunks = run(main())
    assert r.usage.completion_tokens == 37
    assert all(ch.choices for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == STREAM_TEXT
    assert asked_chunks[-1].choices == [] and asked_chunks[-1].usage.completion_tokens == 47
    got = [(r["streamed"], r["prompt_tokens"], r["completion_tokens"], r["usage_source"]) for r in rows(db)]
    assert got == [(0, 14, 37, "api"), (1, 14, 47, "api"), (1, 14, 47, "api")]


@pytest.mark.parametrize("how", ["aclose", "async_with", "drop"])
def test_async_abandoned_stream_logged_once(fake_openai, tmp_path, how):
    db = tmp_path / "l.db"

    async def main():
        c = track(openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0), db=db)
        s = await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
        seen = []
        if how == "async_with":
            async with s:
                async for ch in s:
                    seen.append(ch.choices[0].delta.content or "")
                    if len(seen) == 3:
                        break
        else:
            async for ch in s:
                seen.append(ch.choices[0].delta.content or "")
                if len(seen) == 3:
                    break
            if how == "aclose":
                await getattr(s, "aclose", s.close)()  # aclose(): openai >= 2.x
                await s.close()
        del s
        gc.collect()
        await c.close()
        return "".join(seen)

    received = run(main())
    gc.collect()
    [row] = rows(db)
    assert row["usage_source"] == "estimated" and row["streamed"] == 1
    from tokencost.encodings import get_encoding

    assert row["completion_tokens"] == len(get_encoding("o200k_base").encode(received)) > 0


def test_async_errors_and_cut_stream(fake_openai, tmp_path):
    db = tmp_path / "l.db"

    async def main():
        c = track(openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0), db=db)
        fake_openai.enqueue("error_500")
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="gpt-4o", messages=MSGS)
        fake_openai.enqueue("slow", delay=2.0)
        with pytest.raises(openai.APITimeoutError):
            await c.with_options(timeout=0.3).chat.completions.create(model="gpt-4o", messages=MSGS)
        fake_openai.enqueue("stream_cut", after=4)
        with pytest.raises(Exception) as cut:  # APIConnectionError (older SDKs: httpx's own error)
            async for _ in await c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
                pass
        await c.close()
        return cut.value

    cut = run(main())
    got = [(r["status"], r["error_type"], r["total_cost_pusd"] == 0) for r in rows(db)]
    assert got[:2] == [(500, "InternalServerError", True), (None, "APITimeoutError", True)]
    assert got[2][:2] == (200, type(cut).__name__)
    assert isinstance(cut, openai.APIConnectionError) or type(cut).__name__ == "RemoteProtocolError"


def test_async_tags_follow_each_task(fake_openai, tmp_path):
    db = tmp_path / "l.db"

    async def one(c, user):
        with tags(user=user):
            await asyncio.sleep(0)  # interleave the tasks
            await c.embeddings.create(model="text-embedding-ada-002", input=user)

    async def main():
        c = track(openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db)
        await asyncio.gather(*(one(c, f"user{i}") for i in range(20)))
        await c.close()

    run(main())
    users = sorted(json.loads(r["tags"])["user"] for r in rows(db))
    assert users == sorted(f"user{i}" for i in range(20))


def test_async_responses_stream(fake_openai, tmp_path):
    db = tmp_path / "l.db"

    async def main():
        c = track(openai.AsyncOpenAI(api_key=KEY, base_url=fake_openai.base_url), db=db)
        events = [e async for e in await c.responses.create(model="gpt-4.1", input="hi", stream=True)]
        await c.close()
        return events

    assert run(main())[-1].type == "response.completed"
    [row] = rows(db)
    assert (row["endpoint"], row["prompt_tokens"], row["completion_tokens"]) == ("responses", 37, 11)
