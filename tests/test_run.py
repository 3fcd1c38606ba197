"""``tokencost run -- CMD`` and ``tokencost proxy`` as real subprocesses against the fake upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.test_proxy_support import MESSAGES, SECRET, all_ledger_bytes, ledger_rows
from tokencost.runner import app_name, child_environment

TOKENCOST = [sys.executable, "-m", "tokencost"]

BOT = textwrap.dedent(
    f"""
    import os, sys, openai
    client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
    r = client.chat.completions.create(model="gpt-4o", messages={MESSAGES!r})
    print("usage", r.usage.prompt_tokens, r.usage.completion_tokens)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o", messages={MESSAGES!r}, stream=True))
    print("streamed", len(text))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_HOST", "TOKENCOST_PROXY_URL"):
        print(name, os.environ[name])
    sys.exit(int(sys.argv[1]))
    """
)


def _env(fake_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TOKENCOST_"))}
    env.update(OPENAI_BASE_URL=fake_url, OPENAI_API_KEY=SECRET, **extra)
    return env


def test_run_python_script_logs_its_calls_and_forwards_the_exit_code(fake_openai, tmp_path: Path):
    bot = tmp_path / "bot.py"
    bot.write_text(BOT)
    db = tmp_path / "ledger.db"
    done = subprocess.run(
        [*TOKENCOST, "run", "--db", str(db), "--tag", "user=alice", "--", sys.executable, str(bot), "7"],
        env=_env(fake_openai.base_url), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 7, done.stderr
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert out["usage"] == "14 37" and out["streamed"] != "0"
    proxy_url = out["OPENAI_BASE_URL"]
    assert proxy_url.startswith("http://127.0.0.1:") and proxy_url.endswith("/v1")
    assert proxy_url != fake_openai.base_url  # the child talks to the proxy, the proxy to the fake
    assert out["OPENAI_API_BASE"] == out["TOKENCOST_PROXY_URL"] == proxy_url
    assert out["OPENAI_API_HOST"] + "/v1" == proxy_url
    assert len(fake_openai.received) == 2  # no loop: each call reached upstream exactly once

    rows = ledger_rows(db)
    assert [(r["via"], r["app"], r["streamed"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        ("proxy", "bot.py", 0, 14, 37), ("proxy", "bot.py", 1, 14, 47)]
    assert all(json.loads(r["tags"]) == {"user": "alice"} for r in rows)
    assert SECRET.encode() not in all_ledger_bytes(db)

    # gpt-4o-2024-08-06 at $2.50 / 1M prompt, $10 / 1M completion (pricing/openai.csv), in pUSD:
    # (14 + 14) * 2,500,000 + (37 + 47) * 10,000,000 = 70,000,000 + 840,000,000 = 910,000,000 = $0.000910
    assert sum(r["total_cost_pusd"] for r in rows) == 910_000_000
    lines = done.stderr.splitlines()
    assert lines[0] == f"tokencost: 2 calls, 112 tokens, $0.000910 (ledger: {db})"
    assert lines[1].split() == ["model", "calls", "failed", "prompt", "completion", "cost"]
    assert lines[3].split() == ["gpt-4o-2024-08-06", "2", "0", "28", "84", "$0.000910"]
    assert len(lines) == 4


def test_run_summary_as_json_counts_only_this_runs_rows(fake_openai, tmp_path: Path):
    bot = tmp_path / "bot.py"
    bot.write_text(BOT)
    db = tmp_path / "ledger.db"
    cmd = [*TOKENCOST, "run", "--db", str(db), "--format", "json", "--", sys.executable, str(bot), "0"]
    first = subprocess.run(cmd, env=_env(fake_openai.base_url), capture_output=True, text=True, timeout=120)
    second = subprocess.run(cmd, env=_env(fake_openai.base_url), capture_output=True, text=True, timeout=120)
    assert first.returncode == second.returncode == 0
    summary = json.loads(second.stderr)
    assert len(ledger_rows(db)) == 4  # both runs are in the ledger...
    assert summary["totals"]["calls"] == 2  # ...but the summary is this run's
    [model] = summary["models"]
    assert (model["model"], model["calls"], model["prompt_tokens"], model["completion_tokens"]) == (
        "gpt-4o-2024-08-06", 2, 28, 84)
    assert Decimal(summary["totals"]["cost_usd"]) == Decimal("0.00091")  # 910,000,000 pUSD, as above


def test_run_reports_a_missing_command_like_a_shell(tmp_path: Path):
    done = subprocess.run([*TOKENCOST, "run", "--db", str(tmp_path / "l.db"), "--", "no-such-command-tc"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 127
    assert done.stderr.startswith("Error: cannot run 'no-such-command-tc'")
    assert "Traceback" not in done.stderr


def test_run_without_a_command_is_a_usage_error(tmp_path: Path):
    done = subprocess.run([*TOKENCOST, "run", "--db", str(tmp_path / "l.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_child_killed_by_a_signal_gives_128_plus_n(tmp_path: Path):
    done = subprocess.run([*TOKENCOST, "run", "--db", str(tmp_path / "l.db"), "--", sys.executable, "-c",
                           "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGKILL
    assert "no API calls went through the proxy" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_to_the_command(tmp_path: Path, sig: signal.Signals):
    child = textwrap.dedent(
        f"""
        import signal, sys, time
        signal.signal({int(sig)}, lambda *a: sys.exit(40 + {int(sig)}))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([*TOKENCOST, "run", "--db", str(tmp_path / "l.db"), "--", sys.executable, "-c", child],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 40 + int(sig), err
    assert "no API calls went through the proxy" in err


def test_child_environment_points_every_variable_at_the_proxy():
    env = child_environment({"OPENAI_BASE_URL": "https://up/v1", "NO_PROXY": "corp", "PATH": "/bin"},
                            "http://127.0.0.1:5555/v1")
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"] == env["OPENAI_API_BASE_URL"] == "http://127.0.0.1:5555/v1"
    assert env["OPENAI_API_HOST"] == "http://127.0.0.1:5555"
    assert env["NO_PROXY"] == "corp,127.0.0.1,localhost,::1" and env["PATH"] == "/bin"


def test_app_name():
    assert app_name(["node", "chatbot.js"]) == "chatbot.js"
    assert app_name(["/usr/bin/python3.11", "-u", "bots/bot.py", "x"]) == "bot.py"
    assert app_name(["./mybot", "--fast"]) == "mybot"


def _start_proxy(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*TOKENCOST, "proxy", "--port", "0", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert first.startswith("tokencost proxy: http://127.0.0.1:"), first + proc.stderr.read()
    return proc, first.split()[2]


def test_proxy_command_finishes_in_flight_calls_on_sigterm(fake_openai, tmp_path: Path):
    db = tmp_path / "ledger.db"
    proc, url = _start_proxy(["--upstream", fake_openai.base_url, "--db", str(db), "--tag", "env=ci"],
                             _env("http://127.0.0.1:9/unused"))
    try:
        fake_openai.enqueue("slow", delay=1.0)
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(target=lambda: result.setdefault("r", httpx.post(
            url + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}, timeout=30)))
        t.start()
        deadline = time.monotonic() + 10
        while not fake_openai.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake_openai.received, "the request never reached upstream"
        proc.send_signal(signal.SIGTERM)  # while the call is in flight
        t.join(30)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result["r"].status_code == 200 and result["r"].json()["usage"]["completion_tokens"] == 37
    [row] = ledger_rows(db)
    assert (row["status"], row["completion_tokens"], json.loads(row["tags"])) == (200, 37, {"env": "ci"})
    assert "Traceback" not in proc.stderr.read()


def test_proxy_command_ignores_malformed_tags_with_one_warning(fake_openai, tmp_path: Path):
    db = tmp_path / "ledger.db"
    proc, url = _start_proxy(["--upstream", fake_openai.base_url, "--db", str(db)], _env("http://127.0.0.1:9/unused"))
    try:
        for header in ("===,,a", "user=bob,oops", "team=qa"):
            r = httpx.post(url + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES},
                           headers={"X-Tokencost-Tags": header}, timeout=30)
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 37  # never breaks the call
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().splitlines()
    assert len(fake_openai.received) == 3
    assert not any(k.startswith("x-tokencost") for r in fake_openai.received for k in r["headers"])
    rows = ledger_rows(db)
    assert [json.loads(r["tags"] or "{}") for r in rows] == [{}, {"user": "bob"}, {"team": "qa"}]
    [warning] = [line for line in err if not line.startswith("  point clients at it:")]
    assert warning.startswith("tokencost proxy: warning: ignored malformed X-Tokencost-Tags item(s) '===', 'a';")
    assert "KEY=VALUE" in warning


def test_proxy_command_refuses_an_upstream_that_is_itself(tmp_path: Path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    done = subprocess.run([*TOKENCOST, "proxy", "--port", str(port), "--db", str(tmp_path / "l.db")],
                          env=_env(f"http://127.0.0.1:{port}/v1"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("Error: the upstream http://127.0.0.1:") and "is this proxy itself" in done.stderr


def test_proxy_command_bad_arguments(tmp_path: Path):
    bad_tag = subprocess.run([*TOKENCOST, "proxy", "--tag", "oops", "--db", str(tmp_path / "l.db")],
                             capture_output=True, text=True, timeout=60)
    assert bad_tag.returncode == 2
    assert bad_tag.stderr.strip() == "Error: --tag expects KEY=VALUE, got 'oops'; e.g. --tag team=search"
    bad_key = subprocess.run([*TOKENCOST, "proxy", "--tag", "my team=x", "--db", str(tmp_path / "l.db")],
                             capture_output=True, text=True, timeout=60)
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip() == ("Error: --tag 'my team=x': KEY may hold only letters, digits and _ . : -; "
                                      "e.g. --tag team=search")
    bad_up = subprocess.run([*TOKENCOST, "proxy", "--upstream", "api.openai.com", "--db", str(tmp_path / "l.db")],
                            capture_output=True, text=True, timeout=60)
    assert bad_up.returncode == 2 and "is not an http(s) URL" in bad_up.stderr


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads thread signal masks from /proc (Linux)")
def test_only_the_main_thread_takes_stop_signals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Otherwise the kernel may hand SIGTERM to a proxy thread while `tokencost run` waits in
    # waitpid(), and the handler that forwards it to the command never runs.
    import tokencost.runner
    from tokencost.proxy import ProxyConfig
    from tokencost.runner import ProxyServer

    # The warm-up thread lives ~0.5 s and is started after the proxy: hold it inside warm_up() (which
    # the thread enters only after setting its mask) so it is surely alive, and past that point,
    # while we look. Only the tokenizer loading is replaced; the thread and its start-up are real.
    entered, release = threading.Event(), threading.Event()

    def held_warm_up() -> None:
        entered.set()
        release.wait(30)

    monkeypatch.setattr(tokencost.runner, "warm_up", held_warm_up)

    def blocked(thread: threading.Thread) -> set[int]:
        status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
        return {sig for sig in (signal.SIGINT, signal.SIGTERM) if mask & (1 << (sig - 1))}

    names = ("tokencost-proxy", "tokencost-ledger", "tokencost-warm-up")
    before = set(threading.enumerate())  # e.g. an earlier test's warm-up thread, still finishing
    try:
        with ProxyServer(ProxyConfig(db=tmp_path / "l.db"), port=0) as srv:
            assert entered.wait(30), "the warm-up thread never ran"
            ours = [t for t in threading.enumerate() if t.name in names and t not in before]
            assert sorted(t.name for t in ours) == sorted(names)
            assert {t.name: blocked(t) for t in ours} == {name: {signal.SIGINT, signal.SIGTERM} for name in names}
            assert blocked(threading.main_thread()) == set()
            assert srv.port
    finally:
        release.set()
