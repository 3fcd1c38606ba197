"""Per-call overhead of tokencost.track() against the local fake server.

    /work/venv/bin/python bench/bench_wrap.py [--calls 2000] [--write]

Tracked and untracked clients take turns call by call (A, B, A, B, ...) in one run, so a noisy
shared machine affects both alike; we report each side's median and p99 per call and the
difference of medians (the added time) and their ratio. Variants of the tracked side:

- ``sync``: what ships — the row is written to SQLite on the calling thread before return.
- ``background``: an alternative we rejected — built rows handed to a writer thread (queue).
- ``background-all``: the fullest alternative — row building and the insert both on the writer.
- ``no-write``: the hook, estimate, budget check and row building, without the SQLite write.
- ``helper-estimate``: the earlier design — every prompt-token estimate handed to the helper
  thread, however small the prompt.

Scenarios: a two-message chat, the same streamed, and a chat with a 20-turn history (about
4,600 characters resent every call). Each call's last user message is new (it carries the call's
number), as in a real conversation.

Every scenario runs on a fresh ledger file in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

import tokencost._precall as precall  # noqa: E402
import tokencost.wrap as wrap  # noqa: E402
from tokencost.wrap import track  # noqa: E402

SYSTEM = {"role": "system", "content": "You are terse."}
# A 20-turn chat history (about 4,600 characters) for the "history" scenario: a chatbot resends it
# every turn, with one new user message at the end.
HISTORY = [
    {"role": "user" if i % 2 == 0 else "assistant",
     "content": (f"Turn {i}: " + ("Which of the three plans fits a team of twelve that mostly writes "
                                  "Python and runs its tests on every push? " if i % 2 == 0 else
                                  "The middle plan: it allows parallel jobs and caches dependencies "
                                  "between runs, which matters most for a Python test suite. "))[:230]}
    for i in range(20)
]


def messages(i: int, history: bool) -> list[dict[str, str]]:
    """The conversation of call ``i``: the last user message is new on every call, as in a chat
    (so the prompt-token estimate cannot be answered from memory alone)."""
    new = {"role": "user", "content": f"What's the weather in San Francisco? (question {i})"}
    return [SYSTEM, *HISTORY, new] if history else [SYSTEM, new]


class _Background:
    """Rows go through a queue to one writer thread (the design we measured and rejected)."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.path = ledger.path
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while (rec := self.q.get()) is not None:
            self.ledger.record(rec)

    def record(self, rec) -> None:
        self.q.put(rec)

    def close(self) -> None:
        self.q.put(None)
        self.t.join()


class _BackgroundAll:
    """Row building and the insert both on a writer thread (the fullest background design)."""

    def __init__(self) -> None:
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.orig = wrap._Call._write
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        q = self.q
        wrap._Call._write = lambda call, *a: q.put((call, a))  # type: ignore[method-assign]

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            self.orig(item[0], *item[1])

    def close(self) -> None:
        wrap._Call._write = self.orig  # type: ignore[method-assign]
        self.q.put(None)
        self.t.join()


class _NoWrite:
    def __init__(self, ledger) -> None:
        self.path = ledger.path

    def record(self, rec) -> None:
        return None


# The fake server runs in its own process, so its work does not compete with the client for the
# GIL. The stdlib server writes headers and body in two sends; with Nagle's algorithm on, the
# second can wait for the client's delayed ACK (~40 ms), which would drown a sub-millisecond
# signal, so the benchmark turns Nagle off on the server side.
_SERVER = (
    "import sys; sys.path.insert(0, {root!r}); import tests.fakeserver as f; "
    "sys.exit(f.main(['--port', '0']))"
)


@contextlib.contextmanager
def fake_server():
    proc = subprocess.Popen([sys.executable, "-c", _SERVER.format(root=str(ROOT))], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def _percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _one(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this thread): CPU time is not inflated by waiting for a busy CPU."""
    c0, t0 = time.thread_time(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000


def run(base_url: str, calls: int, variant: str, stream: bool, history: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        plain = openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
        tracked = track(openai.OpenAI(api_key="sk-bench", base_url=base_url, max_retries=0), db=db)
        tracker = tracked._tokencost_tracker
        real = tracker.ledger
        sink = None
        if variant == "background":
            sink = tracker._ledger = _Background(real)
        elif variant == "background-all":
            sink = _BackgroundAll()
        elif variant == "no-write":
            tracker._ledger = _NoWrite(real)
        inline_chars = precall.INLINE_CHARS
        if variant == "helper-estimate":
            precall.INLINE_CHARS = -1  # every estimate goes to the helper thread (the earlier design)

        def call(c):
            n = iter(range(10**9))
            if stream:
                return lambda: list(c.chat.completions.create(model="gpt-4o", messages=messages(next(n), history),
                                                              stream=True))
            return lambda: c.chat.completions.create(model="gpt-4o", messages=messages(next(n), history))

        a, b = call(plain), call(tracked)
        for _ in range(50):  # warm up: connections, imports, caches, the ledger file
            a(), b()
        ta, tb, ca, cb = [], [], [], []
        for _ in range(calls):
            (wa, xa), (wb, xb) = _one(a), _one(b)
            ta.append(wa), ca.append(xa), tb.append(wb), cb.append(xb)
        precall.INLINE_CHARS = inline_chars
        if sink is not None:
            sink.close()
        plain.close()
        tracked.close()
    ma, mb = statistics.median(ta), statistics.median(tb)
    return {
        "variant": variant, "stream": stream, "history": history, "calls": calls,
        "untracked_median": ma, "tracked_median": mb,
        "untracked_p99": _percentile(ta, 99), "tracked_p99": _percentile(tb, 99),
        "added_median": mb - ma, "ratio": mb / ma,
        "cpu_untracked": statistics.median(ca), "cpu_tracked": statistics.median(cb),
        "cpu_added": statistics.median(cb) - statistics.median(ca),
    }


def machine() -> str:
    from _results import uname

    return f"`{uname()}`, nproc {os.cpu_count()}, Python {platform.python_version()}, openai {openai.__version__}"


def _label(r: dict) -> str:
    return "chat, 20-turn history" if r["history"] else ("chat streamed" if r["stream"] else "chat non-streamed")


def render(results: list[dict]) -> str:
    lines = [
        "| call | tracked variant | untracked median ms | tracked median ms | added median ms | ratio "
        "| untracked p99 ms | tracked p99 ms | CPU ms untracked / tracked / added |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {_label(r)} | {r['variant']} | {r['untracked_median']:.3f} "
            f"| {r['tracked_median']:.3f} | {r['added_median']:+.3f} | {r['ratio']:.3f} "
            f"| {r['untracked_p99']:.3f} | {r['tracked_p99']:.3f} "
            f"| {r['cpu_untracked']:.3f} / {r['cpu_tracked']:.3f} / {r['cpu_added']:+.3f} |"
        )
    return "\n".join(lines)


def decision(results: list[dict]) -> str:
    def pick(variant: str, stream: bool, key: str, history: bool = False) -> float:
        return next(r[key] for r in results
                    if r["variant"] == variant and r["stream"] == stream and r["history"] == history)

    sync, bg, bga, nw = (pick(v, False, "cpu_added") for v in ("sync", "background", "background-all", "no-write"))
    wall = pick("sync", False, "added_median")
    s_wall, s_cpu = pick("sync", True, "added_median"), pick("sync", True, "cpu_added")
    h_wall, h_cpu = pick("sync", False, "added_median", True), pick("sync", False, "cpu_added", True)
    hh_wall, hh_cpu = pick("helper-estimate", False, "added_median", True), pick("helper-estimate", False, "cpu_added", True)
    he_wall, he_cpu = pick("helper-estimate", False, "added_median"), pick("helper-estimate", False, "cpu_added")
    verdict = "met" if max(wall, s_wall) <= 0.5 else "NOT met"
    h_ratio = pick("sync", False, "ratio", True)
    u_basic, u_hist = pick("sync", False, "untracked_median"), pick("sync", False, "untracked_median", True)
    return (
        f"**Target (<= 0.5 ms added per call at the median): {verdict} on this machine** for the "
        f"shipped design (sync): non-streamed chat {wall:+.3f} ms wall ({sync:+.3f} ms CPU), streamed "
        f"{s_wall:+.3f} ms ({s_cpu:+.3f} ms CPU). Every call sends a new user message, so the "
        "prompt-token estimate always has new text to encode. Repeated runs on this shared machine "
        "differ by about 0.1 ms.\n\n"
        f"With a 20-turn history resent on every call the added time was {h_wall:+.3f} ms ({h_cpu:+.3f} ms "
        f"CPU), {h_ratio:.3f}x the untracked call, which itself took {u_hist:.3f} ms against {u_basic:.3f} ms "
        "for the two-message chat. This scenario is ours, not the issue's; it is reported so that the "
        "cost of a real chatbot's long prompts is visible.\n\n"
        "### Decision: synchronous writes\n\n"
        "Rows are written on the calling thread, before the call returns (before a stream's last item "
        "is handed over). Issue 3 requires that a `kill -9` loses no row whose call had returned; a "
        "background writer cannot promise that (rows still in its queue die with the process), and "
        "tests/test_wrap_kill.py checks the promise. In this run the SQLite write cost "
        f"{(sync - nw) * 1000:.0f} us of CPU per call on the calling thread (sync {sync * 1000:.0f} us vs "
        f"no-write {nw * 1000:.0f} us, CPU-time medians, non-streamed). On the calling thread the "
        f"background writers cost {bg * 1000:.0f} us (insert moved) and {bga * 1000:.0f} us (row building "
        "and insert moved), but the writer thread's work still competes for the GIL and the CPU. "
        "Wall-clock medians on this shared 2-CPU machine move by more than the effect between cells "
        "(see the untracked column), so the CPU column (time this thread ran, not time it waited "
        "for a CPU) is the better guide.\n\n"
        "### Decision: count small prompts in place, remember texts already counted\n\n"
        "The pre-call prompt estimate used to be handed to a helper thread on every call, to be "
        "counted while the request was on the wire; `helper-estimate` keeps that design. In this run: "
        f"{he_wall:+.3f} ms wall ({he_cpu:+.3f} ms CPU on the calling thread) for the two-message chat and "
        f"{hh_wall:+.3f} ms ({hh_cpu:+.3f} ms CPU) with the history, against {wall:+.3f} and {h_wall:+.3f} ms "
        "shipped. The helper takes the counting off the calling thread, but waking it and sharing the "
        "GIL with it cost about as much wall time as encoding a short prompt, so a prompt with at most "
        "2,000 characters of text not counted before (about 0.1 ms of encoding) is counted on the "
        "calling thread, and only bigger ones go to the helper. Texts already counted are looked up, "
        "not encoded again (`tokencost._memo`), so a chatbot's history costs a dict lookup per "
        "message. Most of the saving against the earlier design (+0.54 ms) came from removing "
        "system calls and cold-cache work from every call: the price is looked up once a second "
        "instead of stat-ing the user prices file, costs are integer picodollar arithmetic, the budget "
        "check answers from its cache without a stat, the estimate's hand-off uses a plain lock "
        "instead of an Event, ids are time-ordered (UUIDv7) so inserts land on the index's last "
        "page, and migration 004 drops an index no query used."
    )


VARIANTS = ("sync", "background", "background-all", "no-write", "helper-estimate")
# (stream, history, variants): the design comparison runs on the plain chat call; the history
# scenario shows what a chatbot's resent conversation costs.
SCENARIOS = (
    (False, False, VARIANTS),
    (True, False, ("sync", "background", "background-all", "no-write")),
    (False, True, ("sync", "helper-estimate")),
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--write", action="store_true", help="replace this script's section of bench/RESULTS.md")
    p.add_argument("--only", choices=VARIANTS, action="append", help="run just these variants (not with --write)")
    args = p.parse_args()
    if args.only and args.write:
        p.error("--write needs every variant (the section compares them)")
    results = []
    with fake_server() as base_url:
        for stream, history, variants in SCENARIOS:
            for variant in variants:
                if args.only and variant not in args.only:
                    continue
                results.append(run(base_url, args.calls, variant, stream, history))
                print(render(results[-1:]).splitlines()[-1], flush=True)
    table = render(results)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        "## Wrapper overhead (bench/bench_wrap.py)\n\n"
        f"{when}; {machine()}; {args.calls} calls per cell, tracked and untracked interleaved, against "
        "tests/fakeserver.py on 127.0.0.1 in its own process (recorded gpt-4o replies: 14 + 37 tokens; "
        "streamed, 14 + 47 tokens in 49 chunks plus the hidden usage chunk; the server replays the same "
        "reply whatever was asked).\n\n"
        f"{table}\n\n"
        f"{decision(results)}\n"
    )
    print()
    print(section)
    if args.write:
        from _results import write_section

        write_section("bench_wrap", section)
    return 0




if __name__ == "__main__":
    sys.exit(main())
