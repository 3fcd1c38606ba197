"""examples/chatbot.py driven end to end as a real subprocess against the local fake server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakeserver import iter_recorded_text
from tests.ledger_helpers import call_rows

ROOT = Path(__file__).resolve().parents[1]
CHATBOT = ROOT / "examples" / "chatbot.py"
KEY = "sk-chatbot-test-key-0123456789"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# gpt-4o-2024-08-06 (what the recorded replies say served them): $2.50 / 1M in, $10 / 1M out
TURN_COST = "$0.000405"  # 14 prompt + 37 completion tokens


def env_for(fake, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TOKENCOST_"))}
    env.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake.base_url, NO_COLOR="1", COLUMNS="200", **extra)
    return env


def chat(fake, db: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHATBOT), "--db", str(db), "--retry-delay", "0", *args],
        input=stdin, capture_output=True, text=True, env=env_for(fake), timeout=60,
    )


ledger = call_rows


def test_two_turns_then_exit(fake_openai, tmp_path):
    db = tmp_path / "chat.db"
    out = chat(fake_openai, db, "Hello there\nAnd again?\nexit\n", "--model", "gpt-4", "--max-tokens", "50")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    text = out.stdout
    assert text.count("I'm unable to provide real-time weather updates") == 2
    assert f"turn 1: 14 prompt + 37 completion tokens, {TURN_COST} (1 call) | session: 51 tokens, {TURN_COST} (1 call)" in text
    assert "turn 2: 14 prompt + 37 completion tokens, $0.000405 (1 call) | session: 102 tokens, $0.000810 (2 calls)" in text
    assert "Session total: 2 calls, 28 prompt + 74 completion tokens, $0.000810" in text
    rows = ledger(db)
    assert len(rows) == 2
    assert all(r["model_requested"] == "gpt-4" and r["status"] == 200 for r in rows)
    assert [json.loads(r["tags"])["turn"] for r in rows] == ["1", "2"]
    assert sum(r["total_cost_pusd"] for r in rows) == 810_000_000  # $0.000810 in picodollars
    # what was sent: the history grows, with the system message first and max_tokens applied
    sent = [r["json"] for r in fake_openai.requests_to("/chat/completions")]
    assert [m["role"] for m in sent[1]["messages"]] == ["system", "user", "assistant", "user"]
    assert sent[1]["messages"][1]["content"] == "Hello there" and sent[1]["max_tokens"] == 50
    assert KEY.encode() not in db.read_bytes()


def test_retries_then_success(fake_openai, tmp_path):
    db = tmp_path / "chat.db"
    fake_openai.enqueue("error_429", times=2)  # turn 1: two rate limits, then the answer
    fake_openai.enqueue("chat")
    fake_openai.enqueue("error_500", times=2)  # turn 2: two server errors, then the answer
    out = chat(fake_openai, db, "one\ntwo\n", "--model", "gpt-4", "--max-retries", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("RateLimitError (HTTP 429); retry") == 2
    assert out.stdout.count("InternalServerError (HTTP 500); retry") == 2
    assert f"turn 1: 14 prompt + 37 completion tokens, {TURN_COST} (3 calls)" in out.stdout
    assert "turn 2: 14 prompt + 37 completion tokens, $0.000405 (3 calls) | session: 102 tokens, $0.000810 (6 calls)" \
        in out.stdout
    rows = ledger(db)
    assert [(r["status"], r["error_type"], r["total_cost_pusd"]) for r in rows] == [
        (429, "RateLimitError", 0), (429, "RateLimitError", 0), (200, None, 405_000_000),
        (500, "InternalServerError", 0), (500, "InternalServerError", 0), (200, None, 405_000_000),
    ]
    assert all(r["estimated_prompt_tokens"] is not None for r in rows)  # our count, even for failures


def test_gives_up_after_max_retries_and_drops_the_unanswered_question(fake_openai, tmp_path):
    db = tmp_path / "chat.db"
    fake_openai.enqueue("error_500", times=2)
    out = chat(fake_openai, db, "one\ntwo\n", "--model", "gpt-3.5-turbo", "--max-retries", "1")
    assert out.returncode == 0, out.stderr
    assert "Error: InternalServerError (HTTP 500)" in out.stdout
    assert "turn 1: 0 prompt + 0 completion tokens, $0.000000 (2 calls)" in out.stdout
    assert "This is a test!" in out.stdout  # gpt-3.5-turbo-0125's recorded reply: 13 + 5 tokens
    # gpt-3.5-turbo-0125: $0.50 / 1M in, $1.50 / 1M out -> 13 * 0.5 + 5 * 1.5 = 14 microdollars
    assert "turn 2: 13 prompt + 5 completion tokens, $0.000014 (1 call) | session: 18 tokens, $0.000014 (3 calls)" \
        in out.stdout
    assert [r["status"] for r in ledger(db)] == [500, 500, 200]
    last = fake_openai.requests_to("/chat/completions")[-1]["json"]["messages"]
    assert [(m["role"], m["content"]) for m in last] == [("system", "You are a helpful assistant."), ("user", "two")]


def test_streamed_replies(fake_openai, tmp_path):
    db = tmp_path / "chat.db"
    out = chat(fake_openai, db, "Hi\n", "--model", "gpt-4", "--stream")
    assert out.returncode == 0, out.stderr
    assert "".join(iter_recorded_text("chat_stream_gpt-4o.sse")) in out.stdout.replace("\n", "")
    assert "turn 1: 14 prompt + 47 completion tokens, $0.000505 (1 call)" in out.stdout
    [row] = ledger(db)
    assert row["streamed"] == 1 and row["usage_source"] == "api"


def test_model_prompt_and_eof(fake_openai, tmp_path):
    db = tmp_path / "chat.db"
    out = chat(fake_openai, db, "gpt-5\ngpt-4\nHello\n")  # a wrong choice is asked again; EOF ends it
    assert out.returncode == 0, out.stderr
    assert "Please type one of: gpt-3.5-turbo, gpt-4" in out.stdout
    assert "Chatting with gpt-4" in out.stdout
    assert [r["model_requested"] for r in ledger(db)] == ["gpt-4"]


def test_on_a_pseudo_terminal_in_colour(fake_openai, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    db = tmp_path / "chat.db"
    env = env_for(fake_openai, TERM="xterm-256color")
    env.pop("NO_COLOR")
    child = pexpect.spawn(sys.executable, [str(CHATBOT), "--db", str(db), "--model", "gpt-4"],
                          env=env, encoding="utf-8", timeout=30)
    try:
        child.expect("You:")
        child.sendline("Hello")
        child.expect(r"session: 51 tokens")
        reply_screen = child.before
        child.expect("You:")
        child.sendeof()
        child.expect("Session total: 1 calls")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert "\x1b[" in reply_screen  # rich coloured the reply on a terminal
    assert "I'm unable to provide real-time weather updates" in ANSI.sub("", reply_screen)
    assert len(ledger(db)) == 1


def test_missing_api_key_is_a_one_line_error(fake_openai, tmp_path):
    env = env_for(fake_openai)
    del env["OPENAI_API_KEY"]
    out = subprocess.run([sys.executable, str(CHATBOT), "--model", "gpt-4", "--db", str(tmp_path / "x.db")],
                         input="hi\n", capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("Error: OPENAI_API_KEY is not set") and "Traceback" not in out.stderr
    assert not (tmp_path / "x.db").exists()
