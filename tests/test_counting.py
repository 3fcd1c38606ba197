"""Prompt token counts against numbers the OpenAI API reported in public.

Every expected value lives in tests/fixtures/counting/*.json next to the URL it was read from; none is
computed with tokencost's own formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokencost.counting import count_prompt, count_prompt_tokens, count_prompts
from tokencost.images import image_tokens

FIXTURES = Path(__file__).parent / "fixtures" / "counting"
EXACT_FILES = ("cookbook.json", "openai_chat_tokens.json", "vision.json", "tool_messages.json")


def _cases(*files: str) -> list:
    out = []
    for name in files:
        for case in json.loads((FIXTURES / name).read_text())["cases"]:
            assert case["source"].startswith("http"), case["id"]
            out.append(pytest.param(case, id=case["id"]))
    return out


def _sizes(case: dict) -> dict | None:
    sizes = case.get("image_sizes")
    return {url: tuple(wh) for url, wh in sizes.items()} if sizes else None


@pytest.mark.parametrize("case", _cases(*EXACT_FILES))
def test_prompt_tokens_match_the_api(case: dict) -> None:
    pc = count_prompt(case["request"], case["model"], image_sizes=_sizes(case))
    assert pc.total == case["prompt_tokens"], case["source"]
    assert pc.exact is case["exact"], pc.notes
    # The breakdown adds up to the total.
    assert sum(m.total for m in pc.messages) + pc.tools_tokens + pc.priming_tokens == pc.total


@pytest.mark.parametrize("case", _cases("estimates.json"))
def test_estimates_stay_close_and_say_so(case: dict) -> None:
    pc = count_prompt(case["request"], case["model"], image_sizes=_sizes(case))
    assert abs(pc.total - case["prompt_tokens"]) <= case["tolerance"], case["source"]
    assert pc.exact is False
    assert pc.notes


@pytest.mark.parametrize("case", _cases("images.json"))
def test_image_tokens_match_published_examples(case: dict) -> None:
    assert image_tokens(case["rule"], case["detail"], tuple(case["size"])) == case["tokens"], case["source"]


def test_request_model_field_is_used_and_argument_overrides_it() -> None:
    case = json.loads((FIXTURES / "cookbook.json").read_text())["cases"]
    old = next(c for c in case if c["model"] == "gpt-3.5-turbo-0301")
    new = next(c for c in case if c["model"] == "gpt-3.5-turbo-0613")
    body = {"model": "gpt-3.5-turbo-0301", "messages": old["request"]["messages"]}
    assert count_prompt_tokens(body) == old["prompt_tokens"]
    assert count_prompt_tokens(body, "gpt-3.5-turbo-0613") == new["prompt_tokens"]


def test_batch_counts_equal_single_counts() -> None:
    cases = [c.values[0] for c in _cases(*EXACT_FILES)]
    got = count_prompts([{**c["request"], "model": c["model"]} for c in cases if not c.get("image_sizes")])
    assert [p.total for p in got] == [c["prompt_tokens"] for c in cases if not c.get("image_sizes")]


def test_large_batches_use_threads_and_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    import tokencost._batch as batch

    base = json.loads((FIXTURES / "cookbook.json").read_text())["cases"][1]  # gpt-3.5-turbo-0613, 129
    monkeypatch.setattr(batch, "_PARALLEL_CHARS", 0)
    monkeypatch.setattr(batch, "_workers", lambda: 2)
    got = count_prompts([base["request"]] * 50, base["model"])
    assert {p.total for p in got} == {base["prompt_tokens"]}
    assert batch._pool is not None


def test_unverified_models_are_estimates_with_notes() -> None:
    case = json.loads((FIXTURES / "cookbook.json").read_text())["cases"][3]  # gpt-4-0613, 129
    pc = count_prompt(case["request"], "gpt-4-32k")
    assert pc.total == case["prompt_tokens"]  # same format as gpt-4, but nobody published a number
    assert pc.exact is False
    assert any("gpt-4-32k-0613" in n for n in pc.notes)
    assert count_prompt(case["request"], "ft:gpt-4-0613:acme::abc123").exact is True


def test_tool_choice_and_unverified_schema_keywords_are_estimates() -> None:
    case = next(c for c in json.loads((FIXTURES / "cookbook.json").read_text())["cases"]
                if c["id"] == "cookbook-tools-gpt-4o")
    req = {**case["request"], "tool_choice": "none"}
    pc = count_prompt(req, case["model"])
    assert pc.exact is False and any("tool_choice" in n for n in pc.notes)
    tools = json.loads(json.dumps(case["request"]["tools"]))
    tools[0]["function"]["parameters"]["properties"]["location"]["default"] = "Paris"
    pc = count_prompt({**case["request"], "tools": tools}, case["model"])
    assert pc.exact is False and any("default" in n for n in pc.notes)


@pytest.mark.parametrize("case", _cases(*EXACT_FILES))
def test_remembered_counts_match_the_api_too(case: dict) -> None:
    # memo=True (the wrapper's and the proxy's estimate) must give the API's number on the first
    # count, which fills the memo, and on the second, which is answered from it.
    from tokencost import _memo

    for _ in range(2):
        got = count_prompt_tokens(case["request"], case["model"], image_sizes=_sizes(case), memo=True)
        assert got == case["prompt_tokens"], case["source"]
    texts = [m["content"] for m in case["request"].get("messages", []) if isinstance(m.get("content"), str)]
    assert any(_memo.seen(t) or _memo.seen(t + "\n") for t in texts if t) or not any(texts)


def test_the_memo_is_bounded_by_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokencost import _memo
    from tokencost.counting import count_text_tokens

    _memo.clear()
    monkeypatch.setattr(_memo, "MAX_CHARS", 1_000)
    monkeypatch.setattr(_memo, "MAX_TEXT", 300)
    texts = [f"message number {i} " * 10 for i in range(40)]  # ~190 characters each
    for t in texts:
        assert count_text_tokens(t, "gpt-4o", memo=True) == count_text_tokens(t, "gpt-4o")
        assert _memo._held <= 1_000
    assert not _memo.seen(texts[0])  # emptied on the way
    assert _memo.seen(texts[-1]) or _memo._held == 0
    long = "x y " * 200  # over MAX_TEXT: counted, never held
    assert count_text_tokens(long, "gpt-4o", memo=True) == count_text_tokens(long, "gpt-4o")
    assert not _memo.seen(long)
    _memo.clear()


def test_the_plain_request_shortcut_agrees_with_the_full_plan() -> None:
    # count_prompt_tokens skips building a plan for plain role/content chats; it must give the
    # plan's total (itself checked against the API above) wherever it applies, and step aside
    # for everything else.
    import random

    from tokencost.counting import _lengths, _Plan, _plain_total

    def plan_total(req: dict) -> int:
        plan = _Plan(req, None, None)
        return plan.total(_lengths(plan.info.encoding, plan.texts))

    cases = [c.values[0] for c in _cases(*EXACT_FILES)]
    taken = 0
    for case in cases:
        req = {**case["request"], "model": case["model"]}
        got = _plain_total(req, None, False)
        if got is not None:
            taken += 1
            assert got == plan_total(req) == case["prompt_tokens"], case["id"]
    assert taken >= 3  # the cookbook's plain examples go through the shortcut
    rnd = random.Random(7)
    words = ["hello", "world", "tokens", "ünïcödé", "🙂", "\n", "  ", "API", "1234", "—"]
    for _ in range(300):
        msgs = [{"role": rnd.choice(["system", "developer", "user", "assistant"]),
                 "content": " ".join(rnd.choice(words) for _ in range(rnd.randrange(0, 30)))}
                for _ in range(rnd.randrange(0, 8))]
        req = {"model": rnd.choice(["gpt-4o", "gpt-4", "gpt-3.5-turbo-0613", "gpt-4o-mini"]), "messages": msgs}
        assert _plain_total(req, None, rnd.random() < 0.5) == plan_total(req)
    # not plain: a name, tools, a tool message, a 0301 model, a null content
    for req in ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi", "name": "bob"}]},
                {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}],
                 "tools": [{"type": "function", "function": {"name": "f"}}]},
                {"model": "gpt-4", "messages": [{"role": "tool", "content": "x"}]},
                {"model": "gpt-3.5-turbo-0301", "messages": [{"role": "user", "content": "hi"}]},
                {"model": "gpt-4", "messages": [{"role": "assistant", "content": None}]}):
        assert _plain_total(req, None, False) is None
    # a role that is not a string is the plan's InputError, not a TypeError from the shortcut
    from tokencost.errors import InputError

    for role in (["user"], {"r": 1}, None):
        with pytest.raises(InputError, match="role"):
            count_prompt_tokens({"model": "gpt-4", "messages": [{"role": role, "content": "hi"}]})
