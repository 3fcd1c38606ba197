"""Counting throughput and `tokencost estimate` cold start, measured against raw tiktoken in one run.

    python bench/bench_estimate.py            # prints a Markdown section; --write appends it to RESULTS.md

1. Throughput: N chat requests (texts drawn from the standard library's docstrings, so the corpus is
   real prose and code, identical on every machine with the same Python) estimated by
   ``estimate_requests`` (what ``tokencost estimate big.jsonl`` runs after parsing: the full formula plus
   prices) vs raw ``tiktoken.Encoding.encode_ordinary_batch`` over the same message contents. Both get
   every core. Target: ours >= 0.9x raw. (bench_counting.py measures the bare counter the same way.)
2. AgentOps' ``tokencost.count_message_tokens`` (PyPI ``tokencost``, a different project with the same
   import name) runs in its own venv under bench/_work, in a subprocess, on the same requests; its
   tiktoken cache is seeded from our verified encoding files so it never touches the network.
3. Cold start: wall time of ``tokencost estimate examples/conversation.json`` vs a bare Python process
   that imports tiktoken, loads cl100k_base from tiktoken's cache and encodes the same text (median of
   repeated runs, interleaved). Target: <= 1.3x.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def corpus() -> list[str]:
    import importlib
    import warnings

    warnings.simplefilter("ignore")

    texts = []
    for mod in sorted(sys.stdlib_module_names):
        if mod.startswith(("_", "test", "idlelib", "tkinter", "turtle", "antigravity", "this")):
            continue
        try:
            m = importlib.import_module(mod)
        except Exception:
            continue
        for name in dir(m):
            doc = getattr(getattr(m, name, None), "__doc__", None)
            if isinstance(doc, str) and 40 < len(doc) < 4000:
                texts.append(doc)
        if len(texts) > 6000:
            break
    return sorted(set(texts))


def make_requests(n: int, texts: list[str]) -> list[dict]:
    rng = random.Random(42)
    reqs = []
    for _ in range(n):
        msgs = [{"role": "system", "content": "You are a helpful assistant."}]
        for j in range(rng.randint(1, 5)):
            msgs.append({"role": "user" if j % 2 == 0 else "assistant", "content": rng.choice(texts)})
        reqs.append({"model": "gpt-4", "messages": msgs})
    return reqs


def seed_tiktoken_cache(cache: Path) -> None:
    """tiktoken's cache names files sha1(url); fill it from our verified copies (never the network)."""
    cache.mkdir(parents=True, exist_ok=True)
    data_dir = ROOT / "src" / "tokencost" / "data"
    for url, name in ((CL100K_URL, "cl100k_base"), (O200K_URL, "o200k_base")):
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if not target.exists():
            target.write_bytes(gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes()))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def throughput(reqs: list[dict], repeat: int) -> dict:
    from tokencost.encodings import get_encoding
    from tokencost.estimation import estimate_requests
    from tokencost.inputs import LoadedRequest

    enc = get_encoding("cl100k_base")
    contents = [m["content"] for r in reqs for m in r["messages"]]
    loaded = [LoadedRequest(r, f"line {i}") for i, r in enumerate(reqs, 1)]
    enc.encode_ordinary_batch(contents[:100])
    estimate_requests(loaded[:100], ["gpt-4"], mode="request")
    raw_, one_, ours_ = [], [], []
    for _ in range(repeat):  # interleaved, so all three see the same machine load
        raw_.append(best_of(lambda: enc.encode_ordinary_batch(contents, num_threads=os.cpu_count() or 2), 1))
        one_.append(best_of(lambda: [enc.encode_ordinary(t) for t in contents], 1))
        ours_.append(best_of(lambda: estimate_requests(loaded, ["gpt-4"], mode="request"), 1))
    raw, one, ours = min(raw_), min(one_), min(ours_)
    return {"requests": len(reqs), "texts": len(contents), "raw_s": raw, "one_s": one, "ours_s": ours,
            "ratio": raw / ours}


AGENTOPS_SCRIPT = r"""
import json, sys, time
from tokencost import count_message_tokens
reqs = [json.loads(l) for l in open(sys.argv[1])]
count_message_tokens(reqs[0]["messages"], "gpt-4")
t = time.perf_counter()
total = sum(count_message_tokens(r["messages"], "gpt-4") for r in reqs)
print(json.dumps({"seconds": time.perf_counter() - t, "total": total}))
"""


def agentops(reqs: list[dict], cache: Path) -> dict | None:
    venv = WORK / "agentops-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "tokencost"], capture_output=True, text=True)
        if r.returncode != 0:
            return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "pip failed"}
    path = WORK / "requests.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in reqs))
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    r = subprocess.run([str(py), "-c", AGENTOPS_SCRIPT, str(path)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    version = subprocess.run([str(py), "-m", "pip", "show", "tokencost"], capture_output=True, text=True).stdout
    out["version"] = next((ln.split()[-1] for ln in version.splitlines() if ln.startswith("Version")), "?")
    return out


BARE = r"""
import json, sys, tiktoken
enc = tiktoken.get_encoding("cl100k_base")
body = json.load(open(sys.argv[1]))
print(sum(len(enc.encode(m["content"])) for m in body["messages"]))
"""


def cold_start(runs: int, cache: Path) -> dict:
    example = ROOT / "examples" / "conversation.json"
    exe = Path(sys.executable).parent / "tokencost"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    ours_cmd = [str(exe), "estimate", str(example)]
    bare_cmd = [sys.executable, "-c", BARE, str(example)]
    ours, bare = [], []
    for cmd in (ours_cmd, bare_cmd):  # warm the OS file cache once
        subprocess.run(cmd, capture_output=True, env=env, check=True)
    for _ in range(runs):
        for cmd, acc in ((ours_cmd, ours), (bare_cmd, bare)):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env, check=True)
            acc.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(bare)
    return {"ours_s": o, "bare_s": b, "ratio": o / b, "runs": runs}


def typer_version() -> str:
    from importlib.metadata import version

    return version("typer")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--write", action="store_true", help="append the section to bench/RESULTS.md")
    ap.add_argument("--skip-agentops", action="store_true")
    args = ap.parse_args()

    WORK.mkdir(exist_ok=True)
    cache = WORK / "tiktoken-cache"
    seed_tiktoken_cache(cache)
    reqs = make_requests(args.requests, corpus())
    tp = throughput(reqs, args.repeat)
    ag = None if args.skip_agentops else agentops(reqs, cache)
    cs = cold_start(args.runs, cache)

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "<!-- bench_estimate:start -->",
        f"## Counting and estimate ({now})",
        "",
        f"Machine: `{platform.platform()}`, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Script: `python bench/bench_estimate.py --write`.",
        "",
        f"Throughput, {tp['requests']:,} chat requests ({tp['texts']:,} message texts, cl100k_base, best of "
        f"{args.repeat}, interleaved):",
        "",
        "| counter | seconds | requests/s | vs raw tiktoken |",
        "| --- | ---: | ---: | ---: |",
        f"| raw `encode_ordinary_batch` (contents only) | {tp['raw_s']:.3f} | {tp['requests'] / tp['raw_s']:,.0f} | 1.00x |",
        f"| raw `encode_ordinary` loop, one thread | {tp['one_s']:.3f} | {tp['requests'] / tp['one_s']:,.0f} | {tp['raw_s'] / tp['one_s']:.2f}x |",
        f"| `tokencost estimate` library path (`estimate_requests`: formula + prices) | {tp['ours_s']:.3f} | {tp['requests'] / tp['ours_s']:,.0f} | {tp['ratio']:.2f}x |",
    ]
    if ag and "seconds" in ag:
        lines.append(
            f"| AgentOps `tokencost` {ag['version']} `count_message_tokens` | {ag['seconds']:.3f} | "
            f"{tp['requests'] / ag['seconds']:,.0f} | {tp['raw_s'] / ag['seconds']:.2f}x |"
        )
    elif ag:
        lines.append(f"| AgentOps `tokencost` | failed: {ag['error']} | | |")
    lines += [
        "",
        f"Cold start, median of {cs['runs']} interleaved runs: `tokencost estimate examples/conversation.json` "
        f"{cs['ours_s'] * 1000:.0f} ms vs bare `import tiktoken` + load cl100k_base + encode "
        f"{cs['bare_s'] * 1000:.0f} ms: **{cs['ratio']:.2f}x** (target <= 1.3x; typer {typer_version()}).",
        "<!-- bench_estimate:end -->",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from _results import write_section

        write_section("bench_estimate", text)


if __name__ == "__main__":
    main()
