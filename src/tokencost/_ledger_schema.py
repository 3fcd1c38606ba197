"""The ledger's schema: named, append-only migrations (``sqlite_utils.Migrations``).

Never edit or reorder a released migration; add the next one at the end of :data:`MIGRATIONS`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

__all__ = ["MIGRATIONS", "MIGRATION_SET", "apply_migrations"]

MIGRATION_SET = "tokencost"


_CALLS_DDL = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    latency_ms REAL,
    endpoint TEXT NOT NULL,
    model_requested TEXT,
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    reasoning_tokens INTEGER,
    total_tokens INTEGER,
    prompt_cost_pusd INTEGER,
    completion_cost_pusd INTEGER,
    total_cost_pusd INTEGER,
    price_id TEXT,
    price_source TEXT,
    usage_source TEXT,
    estimated_prompt_tokens INTEGER,
    status INTEGER,
    error_type TEXT,
    request_id TEXT,
    streamed INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '{}',
    app TEXT,
    via TEXT,
    prompt_text TEXT,
    completion_text TEXT
)
"""

_BUDGETS_DDL = """
CREATE TABLE IF NOT EXISTS budgets (
    name TEXT PRIMARY KEY,
    limit_pusd INTEGER NOT NULL,
    period TEXT NOT NULL,
    models TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '{}',
    action TEXT NOT NULL DEFAULT 'warn',
    created_at TEXT NOT NULL
)
"""


def _m001_calls(db: "Database") -> None:
    db.execute(_CALLS_DDL)


def _m002_budgets(db: "Database") -> None:
    db.execute(_BUDGETS_DDL)


def _m003_calls_indexes(db: "Database") -> None:
    db.execute("CREATE INDEX IF NOT EXISTS calls_started_at ON calls(started_at)")
    db.execute("CREATE INDEX IF NOT EXISTS calls_model ON calls(model)")


def _m004_drop_calls_model_index(db: "Database") -> None:
    # Every logged call paid for this index on the calling thread (one more B-tree page per INSERT,
    # ~10 us of a ~70 us insert, measured) while no query needs it: reports group over rowid
    # ranges and `calls --model` walks the started_at index newest first.
    db.execute("DROP INDEX IF EXISTS calls_model")


#: (name, function) in order. Append only: released names and bodies never change.
MIGRATIONS: tuple[tuple[str, Any], ...] = (
    ("001_create_calls", _m001_calls),
    ("002_create_budgets", _m002_budgets),
    ("003_calls_indexes", _m003_calls_indexes),
    ("004_drop_calls_model_index", _m004_drop_calls_model_index),
)


def apply_migrations(db: "Database", *, stop_before: str | None = None) -> list[str]:
    """Apply pending migrations (all, or those before ``stop_before``); returns the names applied."""
    try:
        from sqlite_utils import Migrations
    except ImportError:  # sqlite-utils < 4: a minimal runner on the same table layout
        return _apply_fallback(db, stop_before)
    migrations = Migrations(MIGRATION_SET)
    for name, fn in MIGRATIONS:
        migrations(name=name)(fn)
    pending = [m.name for m in migrations.pending(db)]
    if stop_before is not None and stop_before in pending:
        pending = pending[: pending.index(stop_before)]
    if pending:
        migrations.apply(db, stop_before=stop_before)
    return pending


def _apply_fallback(db: "Database", stop_before: str | None) -> list[str]:
    db.execute("CREATE TABLE IF NOT EXISTS _sqlite_migrations (id INTEGER PRIMARY KEY, migration_set TEXT,"
               " name TEXT, applied_at TEXT, UNIQUE (migration_set, name))")
    done = {r[0] for r in db.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                                     [MIGRATION_SET]).fetchall()}
    applied = []
    for name, fn in MIGRATIONS:
        if name == stop_before:
            break
        if name in done:
            continue
        fn(db)
        db.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                   [MIGRATION_SET, name, str(datetime.now(timezone.utc))])
        applied.append(name)
    return applied
