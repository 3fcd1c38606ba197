"""The ledger on real SQLite files: migrations, rows read back, and every failure path spooling."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import openai
import pytest

import tokencost._spool as spool_mod
import tokencost.ledger as ledger_mod
import tokencost.record as record_mod
from tests.fakeserver import FakeOpenAI
from tests.ledger_helpers import fresh, ids_in, integrity, run_writer, template_record
from tokencost.errors import LedgerError
from tokencost.ledger import Ledger, LedgerWarning, apply_migrations, default_db_path, open_ledger, parse_since
from tokencost.record import CallRecord, build_record


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(spool_mod, "_warned", set())  # "one warning per process", per test
    monkeypatch.setattr(record_mod, "_warned_pid", None)  # the same for invalid usage
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("TOKENCOST_DB", raising=False)


def tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def applied(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    finally:
        con.close()


# ------------------------------------------------------------------------------ migrations


def test_fresh_open_applies_every_migration(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "ledger.db"
    led = open_ledger(db)
    led.close()
    assert {"calls", "budgets", "_sqlite_migrations"} <= tables(db)
    assert applied(db) == [name for name, _ in ledger_mod.MIGRATIONS]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    budget_cols = [r[1] for r in con.execute("PRAGMA table_info(budgets)")]
    assert budget_cols == ["name", "limit_pusd", "period", "models", "tags", "action", "created_at"]
    call_cols = [r[1] for r in con.execute("PRAGMA table_info(calls)")]
    assert tuple(call_cols) == ledger_mod.COLUMNS
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls'"
                                         " AND sql IS NOT NULL")}
    assert indexes == {"calls_started_at"}  # calls_model was dropped by migration 004
    con.close()


def test_opening_a_db_created_by_an_older_schema(tmp_path: Path) -> None:
    from sqlite_utils import Database

    db = tmp_path / "old.db"
    old = Database(db)
    assert apply_migrations(old, stop_before="002_create_budgets") == ["001_create_calls"]
    old_row = template_record()
    old["calls"].insert(old_row.to_row())
    old.close()
    assert "budgets" not in tables(db)

    led = Ledger(db)
    led.record(fresh(old_row))
    assert led.count() == 2
    led.close()
    assert "budgets" in tables(db)
    assert applied(db) == ["001_create_calls", "002_create_budgets", "003_calls_indexes",
                           "004_drop_calls_model_index"]
    assert old_row.id in ids_in(db)
    # a second open applies nothing and keeps the rows
    open_ledger(db).close()
    assert applied(db) == ["001_create_calls", "002_create_budgets", "003_calls_indexes",
                           "004_drop_calls_model_index"]
    assert len(ids_in(db)) == 2


# ------------------------------------------------------------------------------ rows


def test_rows_read_back_exactly(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    recs = [fresh(template_record(), request_id=f"req_{i}") for i in range(3)]
    with Ledger(db) as led:
        for r in recs:
            led.record(r)
        back = led.calls()
    assert {CallRecord.from_row(r) for r in back} == set(recs)
    assert integrity(db) == "ok"


def test_calls_filters_newest_first(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    db = tmp_path / "ledger.db"
    led = Ledger(db)
    t = [datetime(2026, 11, d, 9, tzinfo=timezone.utc) for d in (1, 2, 3)]
    led.record(template_record(started_at=t[0]))
    led.record(template_record(started_at=t[2]))
    gpt35 = json.loads((Path(__file__).parent / "fixtures/openai/chat_completion_gpt-3.5-turbo.json").read_text())
    led.record(template_record(started_at=t[1], response=gpt35,
                               request={"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]}))
    assert [r["started_at"][:10] for r in led.calls()] == ["2026-11-03", "2026-11-02", "2026-11-01"]
    assert [r["model"] for r in led.calls(model="gpt-3.5-turbo")] == ["gpt-3.5-turbo-0125"]
    assert len(led.calls(since=t[1])) == 2
    assert len(led.calls(limit=1)) == 1


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_db_path() == tmp_path / "data" / "tokencost" / "ledger.db"
    monkeypatch.setenv("TOKENCOST_DB", str(tmp_path / "env.db"))
    assert default_db_path() == tmp_path / "env.db"
    assert Ledger().path == tmp_path / "env.db"
    assert Ledger(tmp_path / "x.db").path == tmp_path / "x.db"


def test_must_exist_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at .*missing.db"):
        open_ledger(tmp_path / "missing.db", must_exist=True)
    assert not (tmp_path / "missing.db").exists()


def test_parse_since() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    assert parse_since("7d", now=now) == datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    assert parse_since("12h", now=now) == datetime(2026, 11, 29, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-01", now=now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_since("7 d", now=now) == parse_since("7d", now=now)
    assert parse_since("30m", now=now) == datetime(2026, 11, 29, 11, 30, tzinfo=timezone.utc)
    # a naive "now" is UTC, like every other naive time in the ledger (not the machine's zone)
    assert parse_since("1h", now=datetime(2026, 11, 29, 12)) == datetime(2026, 11, 29, 11, tzinfo=timezone.utc)
    with pytest.raises(Exception, match="invalid date"):
        parse_since("last tuesday", now=now)


# ------------------------------------------------------------------------------ failure -> spool


def test_corrupt_file_spools_one_warning_then_merges_once(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    garbage = b"this is not a sqlite database\n" * 200
    db.write_bytes(garbage)
    recs = [fresh(template_record()) for _ in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        led = Ledger(db)
        for r in recs:
            led.record(r)  # never raises
        Ledger(db).record(fresh(template_record()))  # another instance: still the one warning
    ours = [w for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(ours) == 1
    assert "not a readable SQLite database" in str(ours[0].message) and str(led.spool_path) in str(ours[0].message)
    assert db.read_bytes() == garbage  # we never overwrite the user's file
    spooled = [json.loads(line) for line in led.spool_path.read_text().splitlines()]
    assert [r["id"] for r in spooled[:3]] == [r.id for r in recs] and len(spooled) == 4

    db.rename(tmp_path / "ledger.db.corrupt")  # the user moves the bad file aside, as told
    led2 = open_ledger(db)
    assert led2.count() == 4
    led2.close()
    assert not led2.spool_path.exists()
    open_ledger(db).close()  # merged exactly once
    assert sorted(ids_in(db)) == sorted(r["id"] for r in spooled)


def test_locked_forever_spools_then_merges(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    open_ledger(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    rec = fresh(template_record())
    try:
        with pytest.warns(LedgerWarning, match="stayed locked"):
            Ledger(db, timeout=0.3).record(rec)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ids_in(db) == []
    led = open_ledger(db)
    assert led.count() == 1 and ids_in(db) == [rec.id]
    led.close()


def test_readonly_database_file_never_breaks_and_merges_once(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    open_ledger(db).close()
    os.chmod(db, 0o444)
    # the child obeys file permissions even when the tests run as root (DAC override dropped)
    out = run_writer(db, 5, "ro", unprivileged=True, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert out.returncode == 0, out.stderr
    written = [l for l in out.stdout.split() if l != "DONE"]
    assert len(written) == 5 and out.stdout.strip().endswith("DONE")
    assert out.stderr.count("LedgerWarning") == 1 and "read-only" in out.stderr
    spool = Path(str(db) + ".spool.jsonl")
    assert [json.loads(l)["id"] for l in spool.read_text().splitlines()] == written
    assert ids_in(db) == []

    os.chmod(db, 0o644)
    led = open_ledger(db)
    assert sorted(ids_in(db)) == sorted(written)
    led.close()
    assert not spool.exists()
    open_ledger(db).close()
    assert len(ids_in(db)) == 5  # exactly once


def test_readonly_directory_spools_to_cache_dir(tmp_path: Path) -> None:
    ro_dir = tmp_path / "ro"
    ro_dir.mkdir()
    db = ro_dir / "ledger.db"
    open_ledger(db).close()
    os.chmod(db, 0o444)
    os.chmod(ro_dir, 0o555)
    try:
        out = run_writer(db, 3, "rodir", unprivileged=True, XDG_CACHE_HOME=str(tmp_path / "cache"))
    finally:
        os.chmod(ro_dir, 0o755)
        os.chmod(db, 0o644)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("LedgerWarning") == 1
    fallback = Ledger(db).fallback_spool_path
    assert fallback.is_relative_to(tmp_path / "cache") and fallback.exists()
    assert not Path(str(db) + ".spool.jsonl").exists()
    led = open_ledger(db)
    assert led.count() == 3
    led.close()
    assert not fallback.exists()


def test_disk_full_spools_to_cache_dir(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here to fill a disk for real")
    try:
        db = mnt / "ledger.db"
        led = open_ledger(db)
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)
        big = template_record(store_content=True,
                              request={"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 20000}]})
        recs = [fresh(big) for _ in range(3)]
        with pytest.warns(LedgerWarning, match="disk full|cannot use ledger"):
            for r in recs:
                led.record(r)
        fallback = led.fallback_spool_path
        assert len(fallback.read_text().splitlines()) >= 2  # the first may still fit in the WAL
        led.close()
        filler.unlink()
        led = open_ledger(db)
        assert {r.id for r in recs} <= set(ids_in(db))
        led.close()
        assert integrity(db) == "ok"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_leftover_merging_file_and_torn_line(tmp_path: Path) -> None:
    """A crash after the merge committed but before the spool was removed must not double rows;
    a half-written last line (crash mid-append) is set aside, not guessed."""
    db = tmp_path / "ledger.db"
    led = open_ledger(db)
    a, b = fresh(template_record()), fresh(template_record())
    led.record(a)
    led.close()
    leftover = Path(str(db) + ".spool.jsonl.merging-999-deadbeef")
    leftover.write_text(json.dumps(a.to_row()) + "\n" + json.dumps(b.to_row()) + "\n")
    live = Path(str(db) + ".spool.jsonl")
    live.write_text(json.dumps(fresh(b).to_row()) + "\n" + '{"id": "torn", "start')
    with pytest.warns(LedgerWarning, match=r"set aside 1 ledger row .*unreadable.* in .*ledger\.db\.spool\.jsonl\.bad"):
        led = open_ledger(db)
    assert led.count() == 3
    led.close()
    assert not leftover.exists() and not live.exists()
    assert Path(str(db) + ".spool.jsonl.bad").read_text().startswith('{"id": "torn"')


def test_record_never_raises_on_garbage(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.db")
    with pytest.warns(LedgerWarning):
        led.record({"no": "id"})  # type: ignore[arg-type]
    assert led.count() == 0


# ------------------------------------------------------------------------------ no keys, ever


def test_no_key_or_authorization_anywhere(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    key = "sk-proj-NEVER-STORE-THIS-KEY-0123456789"
    client = openai.OpenAI(api_key=key, base_url=fake_openai.base_url, max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    fake_openai.enqueue("error_429")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    db = tmp_path / "ledger.db"
    led = Ledger(db)
    for req, (status, resp) in zip(fake_openai.received, [(200, None), (429, None)]):
        led.record(build_record(endpoint="chat.completions", request=req["json"], response=resp, status=status,
                                error_type=None, started_at=None, latency_ms=1.0, streamed=False,
                                tags={"h": json.dumps(sorted(req["headers"]))}, via="proxy", store_content=True))
    led.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert key.encode() not in blob and b"NEVER-STORE" not in blob
    assert b"Bearer" not in blob and b"authorization" not in blob.lower()
    assert b"hello" in blob  # store_content=True did store the prompt: the scan is looking at real data


def test_recording_into_existing_ledger_stays_light(tmp_path: Path) -> None:
    """The wrapper's hot path: no sqlite_utils (it imports pandas) once the schema is current."""
    import subprocess
    import sys

    from tests.ledger_helpers import REPO, writer_env

    db = tmp_path / "ledger.db"
    open_ledger(db).close()
    row = json.dumps(template_record().to_row())
    code = (
        "import json, sys\nfrom tokencost.ledger import Ledger\n"
        f"led = Ledger({str(db)!r}); led.record(json.loads({row!r})); led.close()\n"
        "print(json.dumps(sorted(m for m in ('sqlite_utils', 'pandas', 'numpy', 'openai') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=writer_env(), cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    assert len(ids_in(db)) == 1


# ------------------------------------------------------------------ bad rows never block the ledger

HUGE = 10000000000000000000  # what a broken upstream sent as prompt_tokens; does not fit SQLite INTEGER


def _chat_body(**usage) -> dict:
    body = json.loads((Path(__file__).parent / "fixtures/openai/chat_completion_gpt-4o.json").read_text())
    body["usage"].update(usage)
    return body


@pytest.mark.parametrize("usage", [{"prompt_tokens": HUGE}, {"prompt_tokens": -10, "completion_tokens": "many"}])
def test_invalid_usage_from_the_server_is_estimated_and_the_ledger_keeps_working(
        tmp_path: Path, fake_openai: FakeOpenAI, usage: dict) -> None:
    from tokencost.wrap import track

    db = tmp_path / "ledger.db"
    client = track(openai.OpenAI(api_key="sk-test", base_url=fake_openai.base_url, max_retries=0), db=db)
    fake_openai.enqueue("chat", body=_chat_body(**usage))
    msgs = [{"role": "user", "content": "What's the weather like in SF?"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            client.chat.completions.create(model="gpt-4o", messages=msgs)
    ours = [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(ours) == 1 and "invalid usage field" in ours[0]
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT prompt_tokens, completion_tokens, usage_source FROM calls ORDER BY rowid").fetchall()
    finally:
        con.close()
    # the garbled call is counted by us (14 is also what the API billed for this prompt); the rest as reported
    assert rows == [(14, 37, "estimated")] + [(14, 37, "api")] * 3
    assert sorted(p.name for p in tmp_path.iterdir() if "spool" in p.name) == []


def _spool_line(rec: CallRecord, **changes) -> str:
    return json.dumps({**rec.to_row(), **changes})


def _poisoned_spool(db: Path) -> tuple[list[str], str]:
    """The state a bad row left behind before the fix: rows stuck in a .merging-* file and the spool."""
    open_ledger(db).close()
    good = [fresh(template_record()) for _ in range(3)]
    bad = fresh(template_record())
    Path(str(db) + ".spool.jsonl.merging-4242-deadbeef").write_text(
        "\n".join([_spool_line(good[0]), _spool_line(bad, prompt_tokens=HUGE), _spool_line(good[1])]) + "\n")
    Path(str(db) + ".spool.jsonl").write_text(_spool_line(good[2]) + "\n")
    return [g.id for g in good], bad.id


def test_an_uninsertable_spooled_row_is_set_aside_and_never_blocks_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    good, bad = _poisoned_spool(db)
    with pytest.warns(LedgerWarning, match=r"set aside 1 ledger row .*prompt_tokens=10000000000000000000.* in "
                      + re.escape(str(db) + ".spool.jsonl.bad")):
        led = open_ledger(db)
    assert led.count() == 3
    led.close()
    assert sorted(ids_in(db)) == sorted(good)
    kept = [json.loads(l) for l in Path(str(db) + ".spool.jsonl.bad").read_text().splitlines()]
    assert [(r["id"], r["prompt_tokens"]) for r in kept] == [(bad, HUGE)]  # kept whole, never dropped
    assert [p.name for p in tmp_path.iterdir() if ".merging-" in p.name or p.name.endswith(".jsonl")] == []
    open_ledger(db).close()  # merged exactly once, set aside exactly once
    assert len(ids_in(db)) == 3 and len(Path(str(db) + ".spool.jsonl.bad").read_text().splitlines()) == 1


def test_a_spooled_row_missing_a_required_column_is_set_aside_not_silently_ignored(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    open_ledger(db).close()
    ok, broken = fresh(template_record()), fresh(template_record())
    row = broken.to_row()
    del row["endpoint"]
    Path(str(db) + ".spool.jsonl").write_text(_spool_line(ok) + "\n" + json.dumps(row) + "\n")
    with pytest.warns(LedgerWarning, match="endpoint is missing"):
        led = open_ledger(db)
    led.close()
    assert ids_in(db) == [ok.id]
    assert json.loads(Path(str(db) + ".spool.jsonl.bad").read_text())["id"] == broken.id


def test_reading_commands_never_crash_on_a_poisoned_spool(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    good, _ = _poisoned_spool(db)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_DATA_HOME=str(tmp_path / "data"))
    for cmd in (["calls"], ["report"], ["budget", "status"]):
        out = subprocess.run([sys.executable, "-m", "tokencost", *cmd, "--db", str(db)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert "Traceback" not in out.stderr and "OverflowError" not in out.stderr, (cmd, out.stderr)
        assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    assert sorted(ids_in(db)) == sorted(good)


def test_recording_an_uninsertable_row_sets_it_aside_and_the_next_row_goes_in(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    led = Ledger(db)
    bad, ok = fresh(template_record(), prompt_tokens=HUGE), fresh(template_record())
    with pytest.warns(LedgerWarning, match="too large for SQLite"):
        led.record(bad)
    led.record(ok)  # not degraded to the spool by someone else's bad row
    assert ids_in(db) == [ok.id]
    assert not led.spool_path.exists()
    assert json.loads(Path(str(db) + ".spool.jsonl.bad").read_text())["id"] == bad.id
    led.close()
