"""`tokencost estimate` / `explain` end to end. Token numbers come from API-reported public cases
(tests/fixtures/counting/cookbook.json, each citing its source); prices from the bundled table's rows,
which the test reads independently of the code under test."""

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokencost.cli import app

ROOT = Path(__file__).resolve().parents[1]
COOKBOOK = json.loads((ROOT / "tests/fixtures/counting/cookbook.json").read_text())["cases"]
runner = CliRunner()


def cookbook_case(model):
    return next(c for c in COOKBOOK if c["model"] == model)


def price_rows(model):
    with open(ROOT / "pricing" / "openai.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["model"] == model]


def run(*args, input=None):
    return subprocess.run([sys.executable, "-m", "tokencost", *args], capture_output=True, text=True, input=input)


@pytest.mark.parametrize("model", ["gpt-3.5-turbo-0613", "gpt-4-0613"])
def test_estimate_request_matches_api_count_and_price(tmp_path, model):
    case = cookbook_case(model)
    f = tmp_path / "req.json"
    f.write_text(json.dumps({"model": model, **case["request"]}))
    r = runner.invoke(app, ["estimate", str(f), "--format", "json", "--completion-tokens", "100"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["mode"] == "request"
    assert got["prompt_tokens"] == case["prompt_tokens"]  # the number the API reported
    [row] = [p for p in price_rows(model) if not p["effective_to"]] or price_rows(model)[-1:]
    expect_prompt = Decimal(case["prompt_tokens"]) * Decimal(row["prompt_per_1m"]) / 1_000_000
    expect_completion = 100 * Decimal(row["completion_per_1m"]) / 1_000_000
    assert Decimal(got["prompt_cost_usd"]) == expect_prompt
    assert Decimal(got["completion_cost_usd"]) == expect_completion
    assert Decimal(got["total_cost_usd"]) == expect_prompt + expect_completion
    assert got["exact"] is True and got["fits"] is True


def test_side_by_side_three_models_subprocess():
    r = run("estimate", "examples/conversation.json", "-m", "gpt-3.5-turbo", "-m", "gpt-4", "-m", "gpt-4-32k",
            "--format", "json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    got = json.loads(r.stdout)
    assert [g["model"] for g in got] == ["gpt-3.5-turbo", "gpt-4", "gpt-4-32k"]
    assert {g["mode"] for g in got} == {"conversation"}
    gpt4, gpt4_32k = got[1], got[2]
    # same tokenizer and formula, twice the price: 32k costs exactly 2x for the same tokens
    assert gpt4["prompt_tokens"] == gpt4_32k["prompt_tokens"]
    assert Decimal(gpt4_32k["total_cost_usd"]) == 2 * Decimal(gpt4["total_cost_usd"])
    assert gpt4["context_window"] == 8192 and gpt4_32k["context_window"] == 32768


def test_conversation_turns_resend_history(tmp_path):
    body = json.loads((ROOT / "examples/conversation.json").read_text())
    r = runner.invoke(app, ["estimate", str(ROOT / "examples/conversation.json"), "-m", "gpt-4", "--format", "json"])
    got = json.loads(r.stdout)
    assistants = [i for i, m in enumerate(body["messages"]) if m["role"] == "assistant"]
    assert [t["message_index"] for t in got["turns"]] == assistants
    # each turn's prompt is the request made of everything before that reply, counted on its own
    for t in got["turns"]:
        prefix = tmp_path / f"prefix{t['turn']}.json"
        prefix.write_text(json.dumps({"model": "gpt-4", "messages": body["messages"][: t["message_index"]]}))
        one = json.loads(runner.invoke(app, ["estimate", str(prefix), "--format", "json", "--as", "request"]).stdout)
        assert one["prompt_tokens"] == t["prompt_tokens"]
    assert got["prompt_tokens"] == sum(t["prompt_tokens"] for t in got["turns"])
    # history grows, so each turn's prompt is larger than the last
    prompts = [t["prompt_tokens"] for t in got["turns"]]
    assert prompts == sorted(prompts) and len(set(prompts)) == len(prompts)


def test_context_overflow_names_first_turn(tmp_path):
    long = "word " * 3000  # ~3000 tokens per message
    msgs = [{"role": "user", "content": long}, {"role": "assistant", "content": "ok"}] * 3
    f = tmp_path / "long.json"
    f.write_text(json.dumps(msgs))
    got = json.loads(runner.invoke(app, ["estimate", str(f), "-m", "gpt-4", "-m", "gpt-4-32k", "--format", "json"]).stdout)
    g8, g32 = got
    assert g8["fits"] is False and g8["first_overflow_turn"] == 3  # 3 x 3000 > 8192
    assert g32["fits"] is True and g32["first_overflow_turn"] is None


def test_max_tokens_is_an_upper_bound(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"model": "gpt-4", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}))
    got = json.loads(runner.invoke(app, ["estimate", str(f), "--format", "json"]).stdout)
    assert got["completion_tokens"] == 500 and got["completion_is_upper_bound"] is True
    assert Decimal(got["completion_cost_usd"]) == Decimal("0.03")  # 500 x $0.06/1K
    table = runner.invoke(app, ["estimate", str(f)]).stdout
    assert "500*" in table and "upper bound" in table


def test_at_uses_the_price_and_snapshot_of_that_day(tmp_path):
    case = cookbook_case("gpt-3.5-turbo-0301")
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"model": "gpt-3.5-turbo", **case["request"]}))
    got = json.loads(runner.invoke(app, ["estimate", str(f), "--at", "2023-03-15", "--format", "json"]).stdout)
    # in March 2023 the alias served gpt-3.5-turbo-0301, which the API billed at 127 for this prompt,
    # and the launch price was $0.002/1K
    assert got["prompt_tokens"] == case["prompt_tokens"] == 127
    assert Decimal(got["prompt_cost_usd"]) == Decimal(127) * Decimal("0.002") / 1000


def test_stdin_and_csv():
    r = run("estimate", "-", "-m", "gpt-4o-mini", "--format", "csv",
            input=json.dumps([{"role": "user", "content": "hello"}]))
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()
    assert header.startswith("source,model,mode,prompt_tokens")
    assert row.startswith("<stdin>,gpt-4o-mini,request,")


def test_custom_price_for_unknown_model(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps([{"role": "user", "content": "hello there"}]))
    r = runner.invoke(app, ["estimate", str(f), "-m", "my-azure-gpt", "--price-in", "1", "--price-out", "2",
                            "--completion-tokens", "1000", "--format", "json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["exact"] is False and Decimal(got["completion_cost_usd"]) == Decimal("0.002")
    assert Decimal(got["prompt_cost_usd"]) == Decimal(got["prompt_tokens"]) / 1_000_000


@pytest.mark.parametrize(
    "content, args, code, needle",
    [
        ('{"messages": [', [], 2, "bad.json:1:15: invalid JSON"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', ["-m", "gpt-4"], 2, "unknown role 'bot'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', ["-m", "gpt5"], 2, "did you mean 'gpt-5'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', [], 2, 'no model given; add "model"'),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--at", "yesterday"], 2, "--at 'yesterday' is not a date"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--at", "2020-01-01"], 1, "gpt-4"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--price-in", "1"], 2, "give both"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--price-in", "nan", "--price-out", "1"], 2, "--price-in 'nan' must be a number from 0"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--price-in", "1", "--price-out", "1e400"], 2, "--price-out '1e400' must be a number"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["--price-in", "-1", "--price-out", "1"], 2, "must be a number from 0"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["-m", ""], 2, "--model is empty"),
        ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', ["-m", "text-embedding-3-small"], 2, "is not a chat model"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, content, args, code, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    r = run("estimate", str(f), *args)
    assert r.returncode == code, r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith("Error: ") and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_jsonl_error_names_the_line(tmp_path):
    f = tmp_path / "many.jsonl"
    good = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "a"}]})
    bad = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "a"}, {"role": "user"}]})
    f.write_text("\n".join([good, good, bad]) + "\n")
    r = run("estimate", str(f))
    assert r.returncode == 2 and f"{f} line 3: " in r.stderr and "messages[1]" in r.stderr


def test_jsonl_many_requests_table_has_total(tmp_path):
    f = tmp_path / "many.jsonl"
    lines = [json.dumps({"model": m, "messages": [{"role": "user", "content": "hello " * i}]})
             for i, m in enumerate(["gpt-4", "gpt-4o", "gpt-3.5-turbo"], start=1)]
    f.write_text("\n".join(lines))
    got = json.loads(runner.invoke(app, ["estimate", str(f), "--format", "json"]).stdout)
    assert [g["model"] for g in got] == ["gpt-4", "gpt-4o", "gpt-3.5-turbo"]
    assert [g["source"] for g in got] == [f"{f} line {i}" for i in (1, 2, 3)]
    table = runner.invoke(app, ["estimate", str(f)]).stdout
    assert table.splitlines()[-1].startswith("total")


def test_explain_adds_up(tmp_path):
    case = cookbook_case("gpt-4-0613")
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"model": "gpt-4-0613", **case["request"]}))
    r = runner.invoke(app, ["explain", str(f), "--format", "json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["prompt_tokens"] == case["prompt_tokens"]
    parts = sum(m["total"] for m in got["messages"]) + got["tools_tokens"] + got["priming_tokens"]
    assert parts == got["prompt_tokens"]
    for m in got["messages"]:
        assert m["total"] == (m["content_tokens"] + m["name_tokens"] + m["overhead_tokens"]
                              + m["image_tokens"] + m["tool_call_tokens"])
    assert {c["encoding"] for c in got["compression"]} == {"cl100k_base", "o200k_base"}
    text = runner.invoke(app, ["explain", str(f)]).stdout
    assert "price row used" in text and "https://" in text and "x $0.03/1K" in text


def test_explain_compression_shows_language_difference(tmp_path):
    f = tmp_path / "r.json"
    # the same sentence in English and Hindi: Hindi needs far more tokens per character on cl100k
    f.write_text(json.dumps({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "नमस्ते, आप कैसे हैं? मैं आज बाज़ार जा रहा हूँ।"}]}))
    got = json.loads(runner.invoke(app, ["explain", str(f), "--format", "json"]).stdout)
    by = {c["encoding"]: c for c in got["compression"]}
    assert by["o200k_base"]["tokens"] < by["cl100k_base"]["tokens"]
    assert by["cl100k_base"]["bytes"] > by["cl100k_base"]["characters"]


def _image_request(url, detail="high"):
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": url, "detail": detail}}]}]}


def test_remote_image_size_from_the_command_line(tmp_path):
    url = "https://example.com/photo.png"
    f = tmp_path / "img.json"
    f.write_text(json.dumps(_image_request(url)))
    r = run("estimate", str(f))
    assert r.returncode == 2 and "--image-size URL=WxH" in r.stderr and "never fetched" in r.stderr

    def tokens(size):
        out = runner.invoke(app, ["estimate", str(f), "--image-size", f"{url}={size}", "--format", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["prompt_tokens"]

    # OpenAI's vision guide: a 1024x1024 high-detail image costs 765 tokens, a 2048x4096 one 1105;
    # the rest of the request is identical, so the counts differ by exactly 1105 - 765.
    assert tokens("2048x4096") - tokens("1024x1024") == 1105 - 765
    bad = runner.invoke(app, ["estimate", str(f), "--image-size", "1024x1024"])
    assert bad.exit_code == 2 and "URL=WIDTHxHEIGHT" in bad.stderr


def test_custom_price_needs_one_model_for_mixed_requests(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps({"model": m, "messages": [{"role": "user", "content": "hi"}]})
                           for m in ("gpt-4", "gpt-4o")))
    r = run("estimate", str(f), "--price-in", "1", "--price-out", "1")
    assert r.returncode == 2 and "give exactly one --model" in r.stderr


def test_explain_errors_name_the_file(tmp_path):
    f = tmp_path / "role.json"
    f.write_text('{"messages": [{"role": "bot", "content": "x"}]}')
    r = run("explain", str(f), "-m", "gpt-4")
    assert r.returncode == 2 and r.stderr.startswith(f"Error: {f}: messages[0]: unknown role 'bot'")


def _big_jsonl(tmp_path, n=600):
    f = tmp_path / "big.jsonl"
    f.write_text("\n".join(json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]})
                           for i in range(n)))
    return f


def test_progress_bar_only_when_stderr_is_a_terminal(tmp_path):
    import os
    import pty

    f = _big_jsonl(tmp_path)
    plain = run("estimate", str(f), "--format", "csv")
    assert plain.returncode == 0 and plain.stderr == ""  # a pipe: no progress output at all
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tokencost", "estimate", str(f), "--format", "csv"],
                            stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "80"})
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert out.decode() == plain.stdout  # stdout is the same data either way
    assert b"estimating" in seen  # the progress bar went to the terminal
