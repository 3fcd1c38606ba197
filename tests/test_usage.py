"""Usage extraction, checked against the recorded real responses (numbers from the API itself)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakeserver import FIXTURES, FakeOpenAI, load_fixture, sse_events
from tokencost.usage import (StreamAccumulator, Usage, check_usage, endpoint_for_path, extract_usage, response_model,
                             response_text, usage_from_block)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize(
    "name,expected",
    [
        ("chat_completion_gpt-4o.json", Usage(14, 37, 0, 0, 51)),
        ("chat_completion_gpt-3.5-turbo.json", Usage(13, 5, 0, 0, 18)),
        ("responses_gpt-4o-mini.json", Usage(14, 50, 0, 0, 64)),
        ("completions_gpt-3.5-turbo-instruct.json", Usage(13, 5, 0, 0, 18)),
        ("embeddings_ada-002.json", Usage(8, 0, 0, 0, 8)),
    ],
)
def test_recorded_bodies(name: str, expected: Usage) -> None:
    assert extract_usage(fixture(name)) == expected


def test_error_bodies_have_no_usage() -> None:
    for name in ("error_429_rate_limit.json", "error_500_server_error.json", "error_400_context_length.json"):
        assert extract_usage(fixture(name)) is None


def test_cached_and_reasoning_details_chat_shape() -> None:
    # Field layout of the chat usage object with details (as the API sends for cached prompts / o-series)
    body = {"usage": {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                      "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}}}
    assert extract_usage(body) == Usage(2006, 300, 1920, 256, 2306)


def test_responses_details_shape_and_stream_event() -> None:
    body = {"usage": {"input_tokens": 5000, "input_tokens_details": {"cached_tokens": 4096},
                      "output_tokens": 900, "output_tokens_details": {"reasoning_tokens": 640}, "total_tokens": 5900}}
    assert extract_usage(body) == Usage(5000, 900, 4096, 640, 5900)
    event = {"type": "response.completed", "response": body}
    assert extract_usage(event) == Usage(5000, 900, 4096, 640, 5900)


def test_chat_stream_only_final_chunk_has_usage() -> None:
    events = sse_events(load_fixture("chat_stream_gpt-4o.sse"))
    usages = [extract_usage(e[len("data: "):]) for e in events if e.startswith("data: {")]
    assert usages[:-1] == [None] * (len(usages) - 1)
    assert usages[-1] == Usage(14, 47, 0, 0, 61)


def test_accumulator_over_recorded_chat_stream() -> None:
    acc = StreamAccumulator()
    for line in load_fixture("chat_stream_gpt-4o.sse").splitlines():
        acc.feed_sse_line(line)
    assert acc.done and acc.model == "gpt-4o-2024-08-06" and acc.id == "chatcmpl-9tXjg9DdaOfymTPDrSLfxslQEH0C2"
    assert acc.usage == Usage(14, 47, 0, 0, 61)
    assert acc.text.startswith("I'm unable to provide real-time updates") and acc.text.endswith("news station.")


def test_accumulator_over_recorded_responses_stream() -> None:
    acc = StreamAccumulator()
    for line in load_fixture("responses_stream_gpt-4.1.sse").splitlines():
        acc.feed_sse_line(line)
    assert acc.usage == Usage(37, 11, 0, 0, 48)
    assert acc.model == "gpt-4.1-2025-04-14" and acc.done
    assert acc.text == "Hi"  # the published example elides the other deltas (see SOURCES.md)
    assert response_text(acc.final) == "Hi there! How can I assist you today?"


def test_accumulator_with_openai_objects(fake_openai: FakeOpenAI) -> None:
    c = openai.OpenAI(api_key="sk-test", base_url=fake_openai.base_url, max_retries=0)
    acc = StreamAccumulator()
    for chunk in c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True,
                                           stream_options={"include_usage": True}):
        acc.feed(chunk)
    assert acc.usage == Usage(14, 47, 0, 0, 61)
    r = c.responses.create(model="gpt-4o-mini", input="x")
    assert extract_usage(r) == Usage(14, 50, 0, 0, 64)
    assert response_model(r) == "gpt-4o-mini-2024-07-18"


def test_response_text_and_model() -> None:
    assert response_text(fixture("chat_completion_gpt-3.5-turbo.json")) == "This is a test!"
    assert response_text(fixture("completions_gpt-3.5-turbo-instruct.json")) == "\n\nBonjour, monde !"
    assert response_text(fixture("responses_gpt-4o-mini.json")).startswith("I can't provide real-time updates")
    assert response_text(fixture("embeddings_ada-002.json")) is None
    assert response_model(fixture("embeddings_ada-002.json")) == "text-embedding-ada-002"
    assert extract_usage(None) is None and extract_usage("not json") is None


def test_endpoint_for_path() -> None:
    assert endpoint_for_path("/v1/chat/completions") == "chat.completions"
    assert endpoint_for_path("/v1/completions?x=1") == "completions"
    assert endpoint_for_path("/v1/responses") == "responses"
    assert endpoint_for_path("/v1/embeddings") == "embeddings"
    assert endpoint_for_path("/v1/models") is None


# ------------------------------------------------------------------ invalid usage is never believed


@pytest.mark.parametrize(
    "field,value",
    [("prompt_tokens", -10), ("completion_tokens", "many"), ("prompt_tokens", "14"), ("prompt_tokens", 14.0),
     ("completion_tokens", True), ("prompt_tokens", 10000000000000000000), ("prompt_tokens", 2**53),
     ("total_tokens", -1)],
)
def test_invalid_usage_number_makes_usage_absent(field: str, value: object) -> None:
    body = fixture("chat_completion_gpt-4o.json")
    body["usage"][field] = value
    usage, problem = check_usage(body)
    assert usage is None and extract_usage(body) is None
    assert problem == f"{field}={value!r}"
    assert usage_from_block(body["usage"]) is None


def test_invalid_detail_and_responses_fields() -> None:
    body = {"usage": {"prompt_tokens": 20, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": -5}}}
    assert check_usage(body) == (None, "prompt_tokens_details.cached_tokens=-5")
    event = {"type": "response.completed",
             "response": {"usage": {"input_tokens": 10, "output_tokens": "lots"}}}
    assert check_usage(event) == (None, "output_tokens='lots'")
    assert check_usage({"usage": ["not", "an", "object"]}) == (None, "usage is not an object (list)")


def test_largest_valid_count_and_absent_usage_have_no_problem() -> None:
    assert check_usage({"usage": {"prompt_tokens": 2**53 - 1, "completion_tokens": 0}}) == (
        Usage(2**53 - 1, 0, 0, 0, 2**53 - 1), None)
    assert check_usage({"usage": None}) == (None, None)  # every streamed chunk but the last
    assert check_usage(fixture("error_429_rate_limit.json")) == (None, None)


def test_stream_accumulator_ignores_an_invalid_usage_chunk() -> None:
    acc = StreamAccumulator()
    acc.feed({"id": "c1", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": -3, "completion_tokens": 2}})
    assert acc.usage is None
