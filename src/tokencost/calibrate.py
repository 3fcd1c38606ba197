"""How far to trust ``tokencost estimate``: our pre-call prompt count against the API's number.

Every tracked call stores ``estimated_prompt_tokens`` (our count, made before sending) and, when
the API reported usage (``usage_source = 'api'``), ``prompt_tokens``. Calls without both are left
out. One SQL query does the sums; differences are ``api - ours`` (positive: we counted too few).

JSON contract (``tokencost calibrate --format json``): a list, one object per model and endpoint::

    {"model": "gpt-4o-2024-08-06", "endpoint": "chat.completions",
     "calls": 120,                 # calls with both numbers
     "exact": 118,                 # calls where the numbers are equal
     "exact_rate": "0.9833",       # exact / calls, 4 places
     "mean_diff": "0.03",          # mean of (api - ours), 2 places
     "mean_abs_diff": "0.03",      # mean of |api - ours|, 2 places
     "max_abs_diff": 2}            # largest |api - ours|
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from .errors import LedgerError
from .spend import Filters, connect

__all__ = ["Calibration", "calibrate"]


@dataclass(frozen=True)
class Calibration:
    model: str | None
    endpoint: str | None
    calls: int
    exact: int
    sum_diff: int
    sum_abs_diff: int
    max_abs_diff: int

    def _q(self, num: int, places: str) -> Decimal:
        return (Decimal(num) / Decimal(self.calls)).quantize(Decimal(places), ROUND_HALF_EVEN)

    @property
    def exact_rate(self) -> Decimal:
        return self._q(self.exact, "0.0001")

    @property
    def mean_diff(self) -> Decimal:
        return self._q(self.sum_diff, "0.01")

    @property
    def mean_abs_diff(self) -> Decimal:
        return self._q(self.sum_abs_diff, "0.01")

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "endpoint": self.endpoint, "calls": self.calls, "exact": self.exact,
            "exact_rate": format(self.exact_rate, "f"), "mean_diff": format(self.mean_diff, "f"),
            "mean_abs_diff": format(self.mean_abs_diff, "f"), "max_abs_diff": self.max_abs_diff,
        }


_SQL = """SELECT COALESCE(model, model_requested), endpoint, COUNT(*),
  SUM(prompt_tokens = estimated_prompt_tokens),
  SUM(prompt_tokens - estimated_prompt_tokens),
  SUM(ABS(prompt_tokens - estimated_prompt_tokens)),
  MAX(ABS(prompt_tokens - estimated_prompt_tokens))
FROM calls
WHERE usage_source = 'api' AND prompt_tokens IS NOT NULL AND estimated_prompt_tokens IS NOT NULL{extra}
GROUP BY 1, 2 ORDER BY COUNT(*) DESC, 1, 2"""


def calibrate(db: str | Path | None = None, *, filters: Filters | None = None,
              con: sqlite3.Connection | None = None) -> list[Calibration]:
    """Per model and endpoint: calls, exact matches, mean and max difference (api - ours)."""
    where, params = (filters or Filters()).where()
    extra = (" AND " + where[len(" WHERE "):]) if where else ""
    own = con is None
    path = None
    if con is None:
        con, path = connect(db)
    try:
        rows = con.execute(_SQL.format(extra=extra), params).fetchall()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path or ''}: {exc}") from None
    finally:
        if own:
            con.close()
    return [Calibration(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in rows]

