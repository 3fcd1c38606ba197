import json

import pytest

from tokencost.errors import InputError
from tokencost.inputs import load_requests, parse_requests


def test_request_body_and_bare_list(tmp_path):
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    p = tmp_path / "req.json"
    p.write_text(json.dumps(body))
    [r] = load_requests(p)
    assert r.body == body and r.where == str(p)
    p.write_text(json.dumps(body["messages"]))
    [r] = load_requests(p)
    assert r.body == {"messages": body["messages"]}


def test_jsonl_lines_are_located(tmp_path):
    p = tmp_path / "reqs.jsonl"
    good = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "a"}]})
    p.write_text(good + "\n\n" + good + "\n{not json\n")
    with pytest.raises(InputError) as e:
        load_requests(p)
    assert f"{p} line 4" in str(e.value) and "column 2" in str(e.value)
    p.write_text(good + "\n" + good + "\n")
    got = load_requests(p)
    assert [r.where for r in got] == [f"{p} line 1", f"{p} line 2"]


def test_jsonl_detected_without_extension():
    good = json.dumps({"messages": [{"role": "user", "content": "a"}]})
    assert len(parse_requests(good + "\n" + good, "x.json")) == 2


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"messages": [', "x.json:1:15: invalid JSON"),
        ("42", "found a JSON int"),
        ('{"model": "gpt-4"}', 'no "messages" key'),
        ('{"messages": {}}', '"messages" must be a list'),
        ('{"messages": []}', '"messages" is empty'),
        ('{"messages": [{"role": "user", "content": "a"}], "max_tokens": -5}', '"max_tokens" must be a non-negative'),
        ("   ", "file is empty"),
    ],
)
def test_bad_documents(text, needle):
    with pytest.raises(InputError) as e:
        parse_requests(text, "x.json")
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_requests(tmp_path / "nope.json")
