"""Many threads sharing one tracked client: exactly one row per call, tags kept per thread."""

from __future__ import annotations

import json
import threading
from collections import Counter

import openai

from tests.test_wrap import KEY, MSGS, rows
from tokencost.tagging import tags
from tokencost.wrap import track

THREADS = 16
CALLS = 12


def test_many_threads_exact_row_counts(fake_openai, tmp_path):
    db = tmp_path / "l.db"
    # max_retries: the stdlib fake server's small listen backlog can reset a connection when 16
    # threads connect at once (untracked clients see it too); the SDK retries inside one call,
    # which stays one row
    c = track(openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=5), db=db)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        try:
            start.wait()
            with tags(worker=str(n)):
                for i in range(CALLS):
                    if i % 3 == 0:
                        list(c.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True))
                    elif i % 3 == 1:
                        c.chat.completions.create(model="gpt-4o", messages=MSGS)
                    else:
                        c.embeddings.create(model="text-embedding-ada-002", input="x")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = rows(db)
    assert len(got) == THREADS * CALLS <= len(fake_openai.received)
    assert len({r["id"] for r in got}) == len(got)
    per_worker = Counter(json.loads(r["tags"])["worker"] for r in got)
    assert per_worker == {str(n): CALLS for n in range(THREADS)}
    assert Counter(r["endpoint"] for r in got) == {"chat.completions": THREADS * 8, "embeddings": THREADS * 4}
    assert all(r["usage_source"] == "api" for r in got)
