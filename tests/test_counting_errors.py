"""Bad requests get one clear InputError naming the message and how to fix it."""

from __future__ import annotations

import base64
import io

import pytest

from tokencost.counting import count_prompt, count_text_tokens
from tokencost.errors import InputError, UnknownModel


def _err(request, model="gpt-4o", **kw) -> str:
    with pytest.raises(InputError) as exc:
        count_prompt(request, model, **kw)
    assert exc.value.exit_code == 2
    return str(exc.value)


def test_unknown_role_names_the_message() -> None:
    msg = _err([{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}])
    assert "messages[1]" in msg and "'bot'" in msg and "assistant" in msg


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"role": "user", "content": 42}, ["content must be", "int"]),
        ({"role": "user"}, ["needs \"content\""]),
        ({"role": "user", "content": None}, ["needs \"content\""]),
        ({"role": "user", "content": [{"type": "audio"}]}, ["type 'audio'", "supported"]),
        ({"role": "user", "content": [{"type": "text"}]}, ["\"text\" string"]),
        ({"role": "user", "content": "x", "name": 7}, ["\"name\" must be a string"]),
        ({"role": "function", "content": "{}"}, ["\"name\" of the function"]),
        ({"role": "tool", "content": "ok"}, ["tool_call_id"]),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "a", "function": {"arguments": "{}"}}]},
         ["tool_calls[0]", "\"name\""]),
        ("hello", ["expected an object"]),
    ],
)
def test_bad_messages(message, words) -> None:
    msg = _err([{"role": "system", "content": "s"}, message])
    assert "messages[1]" in msg
    for w in words:
        assert w in msg


def test_request_shape_and_model() -> None:
    assert "messages" in _err({"model": "gpt-4o"})
    assert "no model" in _err([{"role": "user", "content": "hi"}], model=None)
    assert "request object" in _err("hello")
    with pytest.raises(UnknownModel):
        count_prompt([{"role": "user", "content": "hi"}], "gpt-9")


def test_tools_shapes() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert "tools[0]" in _err({"messages": msgs, "tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert "tools[0].function" in _err({"messages": msgs, "tools": [{"type": "function", "function": {}}]})
    assert "tool_choice" in _err({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f"}}],
                                  "tool_choice": "sometimes"})
    assert "functions[0]" in _err({"messages": msgs, "functions": [{"description": "no name"}]}, "gpt-4")


def _png(w: int, h: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_remote_image_without_size_says_how_to_give_it() -> None:
    msg = _err([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}])
    assert "messages[0].content[0]" in msg and "image_sizes" in msg and "never fetched" in msg


def test_low_detail_tiles_need_no_size() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}
    assert count_prompt([{"role": "user", "content": [part]}], "gpt-4o").messages[0].image_tokens == 85


def test_images_on_text_only_models_and_bad_data() -> None:
    part = {"type": "image_url", "image_url": {"url": _png(10, 10)}}
    assert "does not accept images" in _err([{"role": "user", "content": [part]}], "gpt-4-0613")
    bad = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    assert "not an image" in _err([{"role": "user", "content": [bad]}])
    odd = {"type": "image_url", "image_url": {"url": _png(10, 10), "detail": "ultra"}}
    assert "detail" in _err([{"role": "user", "content": [odd]}])


def test_data_url_size_is_read_from_the_header() -> None:
    url = _png(3000, 1000)
    part = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    remote = {"type": "image_url", "image_url": {"url": "https://x.test/b.png", "detail": "high"}}
    a = count_prompt([{"role": "user", "content": [part]}], "gpt-4o").messages[0].image_tokens
    b = count_prompt([{"role": "user", "content": [remote]}], "gpt-4o",
                     image_sizes={"https://x.test/b.png": (3000, 1000)}).messages[0].image_tokens
    assert a == b > 85


def test_count_text_tokens() -> None:
    assert count_text_tokens("", "gpt-4") == 0
    # Special-token text is ordinary text to the API.
    assert count_text_tokens("<|endoftext|>", "gpt-4o") > 1
    with pytest.raises(InputError):
        count_text_tokens(None, "gpt-4")  # type: ignore[arg-type]


def test_counting_imports_stay_light() -> None:
    import subprocess
    import sys

    code = ("import sys, tokencost.counting, tokencost.models; "
            "print(sorted(m for m in ('PIL', 'pandas', 'openai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
