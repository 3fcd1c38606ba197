"""Counting throughput vs raw tiktoken, measured in one run (ratios, not absolute times).

    python bench/bench_counting.py [--requests 20000] [--repeat 5] [--write]

Baseline: ``tiktoken.Encoding.encode_ordinary_batch`` over exactly the message contents of the same
requests (the cheapest possible "count the text"). Ours: ``tokencost.counting.count_prompts`` on the
whole requests (validation, names, framing, per-message breakdown, exactness). The brief asks for
ours >= 0.9x the baseline's throughput. ``--write`` replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone

from tokencost.counting import count_prompts
from tokencost.encodings import get_encoding

WORDS = ("the quick brown fox jumps over lazy dog token cost model prompt message assistant user system "
         "price budget ledger report estimate conversation context window 2024 ½ naïve café 東京 数据 "
         "function call tool json {\"a\": 1} https://example.com/x?y=z 3.14159 -- ** `code` \n").split(" ")


def make_requests(n: int, seed: int = 7) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        msgs = [{"role": "system", "content": " ".join(rnd.choices(WORDS, k=rnd.randint(10, 60)))}]
        for t in range(rnd.randint(1, 6)):
            role = "user" if t % 2 == 0 else "assistant"
            msgs.append({"role": role, "content": " ".join(rnd.choices(WORDS, k=rnd.randint(5, 400)))})
        if rnd.random() < 0.2:
            msgs[1]["name"] = "alice"
        out.append({"model": rnd.choice(["gpt-4", "gpt-4-32k", "gpt-3.5-turbo-0613"]), "messages": msgs})
    return out


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    requests = make_requests(args.requests)
    contents = [m["content"] for r in requests for m in r["messages"]]
    enc = get_encoding("cl100k_base")
    enc.encode_ordinary("warm up")
    count_prompts(requests[:10])

    raw = best_of(args.repeat, lambda: enc.encode_ordinary_batch(contents))
    ours = best_of(args.repeat, lambda: count_prompts(requests))
    raw_seq = best_of(args.repeat, lambda: [enc.encode_ordinary(c) for c in contents])
    # Sanity: same token total as raw encoding plus framing.
    tokens = sum(len(t) for t in enc.encode_ordinary_batch(contents))
    counted = sum(p.total for p in count_prompts(requests))
    assert counted > tokens

    mb = sum(len(c.encode()) for c in contents) / 1e6
    lines = [
        f"## counting (bench/bench_counting.py) — {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: `{platform.uname().system} {platform.uname().release} {platform.uname().machine}`, "
        f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}",
        f"- input: {args.requests} requests, {len(contents)} messages, {mb:.1f} MB of text, "
        f"{tokens} content tokens; best of {args.repeat}",
        "",
        "| what | seconds | MB/s | vs raw batch |",
        "|---|---|---|---|",
        f"| tiktoken encode_ordinary_batch (contents only) | {raw:.3f} | {mb / raw:.1f} | 1.00x |",
        f"| tiktoken encode_ordinary, one thread | {raw_seq:.3f} | {mb / raw_seq:.1f} | {raw / raw_seq:.2f}x |",
        f"| tokencost count_prompts (whole requests) | {ours:.3f} | {mb / ours:.1f} | {raw / ours:.2f}x |",
        "",
        f"Throughput ratio ours/raw = **{raw / ours:.2f}x** (target >= 0.9x).",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        from _results import write_section

        write_section("bench_counting", "\n".join(lines))


if __name__ == "__main__":
    main()
