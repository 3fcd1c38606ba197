"""The Node.js tutorial chatbot (real npm ``openai`` package), unmodified, under ``tokencost run``.

Set-up installs the example's locked npm packages from the registry with ``.ci/node-setup.sh``
(``npm ci``) when they are missing. Skipped only when node itself is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakeserver import iter_recorded_text, load_fixture
from tests.test_proxy_support import SECRET, all_ledger_bytes, ledger_rows

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node-chatbot"
TOKENCOST = [sys.executable, "-m", "tokencost"]

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed on this machine")


@pytest.fixture(scope="module")
def node_example() -> Path:
    if not (EXAMPLE / "node_modules" / "openai" / "package.json").exists():
        done = subprocess.run(["bash", str(ROOT / ".ci" / "node-setup.sh")], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not (EXAMPLE / "node_modules" / "openai").exists():
            pytest.fail(f"could not install the Node example's packages (npm ci):\n{done.stdout}\n{done.stderr}")
    return EXAMPLE


def _env(fake_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TOKENCOST_", "CHATBOT_"))}
    env.update(OPENAI_BASE_URL=fake_url, OPENAI_API_KEY=SECRET, NO_COLOR="1", FORCE_COLOR="0")
    return env


# Expected costs in picodollars (pUSD), by hand from the published prices in pricing/openai.csv:
# gpt-3.5-turbo-0125: $0.50 / 1M prompt = 500,000 pUSD a token, $1.50 / 1M completion = 1,500,000 pUSD.
#   13 prompt + 5 completion: 13 * 500,000 + 5 * 1,500,000 = 6,500,000 + 7,500,000 = 14,000,000 pUSD
# gpt-4o-2024-08-06: $2.50 / 1M prompt = 2,500,000 pUSD a token, $10 / 1M completion = 10,000,000 pUSD.
#   14 prompt + 47 completion: 35,000,000 + 470,000,000 = 505,000,000 pUSD
#   14 prompt + 37 completion: 35,000,000 + 370,000,000 = 405,000,000 pUSD
GPT35_13_5_PUSD = 14_000_000
GPT4O_14_47_PUSD = 505_000_000
GPT4O_14_37_PUSD = 405_000_000


def test_node_chatbot_under_tokencost_run(node_example: Path, fake_openai, tmp_path: Path):
    npm_openai = json.loads((node_example / "node_modules" / "openai" / "package.json").read_text())["version"]
    assert int(npm_openai.split(".")[0]) >= 4  # the real SDK from npm, not a stub
    db = tmp_path / "ledger.db"
    # turn 1: non-streamed gpt-3.5-turbo; turn 2: streamed; turn 3: gpt-4, a 429 first, then the retry
    fake_openai.enqueue("chat")
    fake_openai.enqueue("chat_stream_usage")
    fake_openai.enqueue("error_429")
    fake_openai.enqueue("chat")
    script = "Say this is a test!\n/stream on\nWhat's the weather like in SF?\n/model gpt-4\n/stream off\nAnd tomorrow?\n"
    done = subprocess.run(
        [*TOKENCOST, "run", "--db", str(db), "--tag", "user=alice", "--",
         "node", "chatbot.js", "--model", "gpt-3.5-turbo", "--max-tokens", "100", "--retries", "2",
         "--retry-delay", "10"],
        input=script, cwd=node_example, env=_env(fake_openai.base_url), capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "gpt-3.5-turbo: This is a test!" in out
    assert "[tokens: 13 prompt + 5 completion]" in out
    streamed = "".join(iter_recorded_text("chat_stream_gpt-4o.sse"))
    assert f"gpt-3.5-turbo: {streamed}\n" in out  # the streamed turn, every delta
    plain = json.loads(load_fixture("chat_completion_gpt-4o.json"))["choices"][0]["message"]["content"]
    assert f"gpt-4: {plain}\n  [tokens: 14 prompt + 37 completion]" in out
    assert "(429 error, retry 1/2 in 10 ms)" in done.stderr

    # What the npm client sent upstream, through the proxy
    sent = [r["json"] for r in fake_openai.received]
    assert [r["model"] for r in sent] == ["gpt-3.5-turbo", "gpt-3.5-turbo", "gpt-4", "gpt-4"]
    assert sent[1]["stream"] is True and sent[1]["stream_options"] == {"include_usage": True}  # added by us
    assert [len(r["messages"]) for r in sent] == [2, 4, 6, 6]  # history kept; the retry resends turn 3
    assert all(r["max_tokens"] == 100 for r in sent)
    assert "x-stainless-lang" in fake_openai.received[0]["headers"]  # the npm SDK's own headers came through

    rows = ledger_rows(db)
    got = [(r["model_requested"], r["model"], r["prompt_tokens"], r["completion_tokens"], r["status"],
            r["error_type"], r["streamed"], r["usage_source"]) for r in rows]
    assert got == [
        ("gpt-3.5-turbo", "gpt-3.5-turbo-0125", 13, 5, 200, None, 0, "api"),
        ("gpt-3.5-turbo", "gpt-4o-2024-08-06", 14, 47, 200, None, 1, "api"),
        ("gpt-4", "gpt-4", 0, 0, 429, "RateLimitError", 0, None),
        ("gpt-4", "gpt-4o-2024-08-06", 14, 37, 200, None, 0, "api"),
    ]
    expected = [GPT35_13_5_PUSD, GPT4O_14_47_PUSD, 0, GPT4O_14_37_PUSD]
    assert [r["total_cost_pusd"] for r in rows] == expected
    assert all(r["via"] == "proxy" and r["app"] == "chatbot.js" for r in rows)
    assert all(json.loads(r["tags"]) == {"user": "alice"} for r in rows)
    assert SECRET.encode() not in all_ledger_bytes(db)

    # 14,000,000 + 505,000,000 + 405,000,000 = 924,000,000 pUSD = $0.000924; gpt-4o: 910,000,000 = $0.000910
    assert done.stderr.splitlines() == [
        "  (429 error, retry 1/2 in 10 ms)",
        f"tokencost: 4 calls, 130 tokens, $0.000924 (ledger: {db})",
        "model               calls  failed  prompt  completion       cost",
        "------------------  -----  ------  ------  ----------  ---------",
        "gpt-3.5-turbo-0125      1       0      13           5  $0.000014",
        "gpt-4                   1       1       0           0  $0.000000",
        "gpt-4o-2024-08-06       2       0      28          84  $0.000910",
    ]

    # ...and `tokencost report --by model` shows it, to the picodollar
    report = subprocess.run([*TOKENCOST, "report", "--db", str(db), "--by", "model", "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    by_model = {r["model"]: r for r in data["rows"]}
    assert by_model["gpt-3.5-turbo-0125"]["calls"] == 1
    assert by_model["gpt-4o-2024-08-06"]["calls"] == 2
    assert Decimal(data["totals"]["total_cost_usd"]) == Decimal("0.000924")
