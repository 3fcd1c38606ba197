"""notebooks/spend_analysis.ipynb runs top to bottom on a ledger written by the real wrapper.

The sample ledger comes from real traffic: ``tokencost.track`` around the real ``openai`` client,
talking over a loopback socket to tests/fakeserver.FakeOpenAI (recorded real responses). The
notebook's numbers are then checked against the rows, summed here with Decimal.

``python tests/test_notebook.py`` re-executes the notebook in place on such a ledger, so the
copy in the repository shows real outputs.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from tests.ledger_helpers import call_rows

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "spend_analysis.ipynb"
KEY = "sk-test-not-a-real-key-000000000000"
MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What's the weather in San Francisco?"}]


def generate_ledger(server, db: Path) -> None:
    """A small day of tracked traffic: several users and features, streams, a failure."""
    import openai

    from tokencost.wrap import tags, track

    client = track(openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0), db=db, tags={"app_env": "test"})
    for i in range(6):
        with tags(user=f"u{i % 3}", feature="search" if i % 2 else "chat"):
            client.chat.completions.create(model="gpt-4o", messages=MSGS)
    with tags(user="u1", feature="summarize"):
        client.responses.create(model="gpt-4o-mini", input="Tell me a three sentence bedtime story about a unicorn.")
        for _ in client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True,
                                                stream_options={"include_usage": True}):
            pass
    with tags(user="u2", feature="chat"):
        server.enqueue("chat_stream")  # a server that never sends usage: tokencost estimates it
        for _ in client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True):
            pass
        server.enqueue("error_429")
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=MSGS)
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")


ledger_rows = call_rows


def run_notebook(db: Path, workdir: Path, *, save_to: Path | None = None):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    old = os.environ.get("TOKENCOST_DB")
    os.environ["TOKENCOST_DB"] = str(db)  # the kernel inherits the environment
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if old is None:
            os.environ.pop("TOKENCOST_DB", None)
        else:
            os.environ["TOKENCOST_DB"] = old
    if save_to is not None:
        nbformat.write(nb, save_to)
    return nb


def _summary(nb) -> dict:
    out = nb.cells[-1].outputs
    text = "".join(o.get("text", "") for o in out if o.get("output_type") == "stream")
    return json.loads(text)


def test_notebook_runs_on_a_wrapper_written_ledger(fake_openai, tmp_path):
    db = tmp_path / "ledger.db"
    generate_ledger(fake_openai, db)
    rows = ledger_rows(db)
    assert len(rows) == 11 and any(r["status"] == 429 for r in rows)
    assert any(r["usage_source"] == "estimated" for r in rows)

    nb = run_notebook(db, tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    s = _summary(nb)

    priced = [r for r in rows if r["total_cost_pusd"] is not None]
    want_total = sum((Decimal(r["total_cost_pusd"]) for r in priced), Decimal(0)) / Decimal(10**12)
    assert Decimal(s["total_cost_usd"]) == want_total > 0
    assert Decimal(s["pivot_total_usd"]) == want_total
    assert s["calls"] == len(rows) and s["failed_calls"] == 1
    want_by_model: dict = {}
    for r in rows:
        m = r["model"] or r["model_requested"]
        if r["total_cost_pusd"] is not None:
            want_by_model[m] = want_by_model.get(m, Decimal(0)) + Decimal(r["total_cost_pusd"]) / Decimal(10**12)
    for m, c in s["by_model_usd"].items():
        if m in want_by_model:
            assert Decimal(c) == want_by_model[m], m
    assert {d: Decimal(c) for d, c in s["by_day_usd"].items()} == {
        d: sum((Decimal(r["total_cost_pusd"]) / Decimal(10**12) for r in priced if r["started_at"][:10] == d), Decimal(0))
        for d in {r["started_at"][:10] for r in rows}}
    # the most expensive feature tag first: computed from the rows
    spend: dict = {}
    for r in priced:
        f = json.loads(r["tags"]).get("feature")
        spend[f] = spend.get(f, 0) + r["total_cost_pusd"]
    assert s["top_tags"]["feature"][0] == max(spend, key=spend.get)
    assert {"feature", "user", "app_env"} <= set(s["top_tags"])
    assert "gpt-4o-2024-08-06" in s["calibration_models"]
    # a picture was drawn
    pngs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and (tmp_path / "spend_by_day.png").stat().st_size > 10_000


if __name__ == "__main__":  # refresh the outputs stored in the repository
    import tempfile

    sys.path.insert(0, str(ROOT))
    from tests.fakeserver import FakeOpenAI

    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as srv:
        db = Path(tmp) / "sample-ledger.db"
        generate_ledger(srv, db)
        run_notebook(db, Path(tmp), save_to=NOTEBOOK)
    print(f"executed {NOTEBOOK}")
