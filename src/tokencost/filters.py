"""Which calls a report, calibration or budget looks at: ``--since``/``--until``/``--model``/
``--tag``/``--tz`` parsed into :class:`Filters`, which renders its SQL ``WHERE`` clause.

Times are compared as text against the ledger's ``started_at`` (``2026-11-29T12:00:00.123456Z``,
UTC), so a filter on time is a range scan of the ``calls_started_at`` index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Sequence

from .errors import UsageError

__all__ = ["Filters", "build_filters", "get_zone", "iso_z", "json_path", "match_sql", "parse_tags", "parse_when"]


def parse_tags(pairs: Sequence[str], option: str = "--tag") -> tuple[tuple[str, str], ...]:
    out = []
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"bad {option} {p!r}: expected KEY=VALUE, e.g. {option} team=search")
        out.append((k.strip(), v))
    return tuple(out)


def get_zone(tz: str) -> Any:
    if tz.upper() == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {tz!r}; use an IANA name such as UTC or Europe/Paris") from None


_REL = re.compile(r"^(\d+)\s*([smhdw])$")  # m is minutes (months are not a fixed span)
_SPAN = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, *, tz: str = "UTC", end: bool = False, now: datetime | None = None,
               option: str = "--since") -> datetime:
    """``YYYY-MM-DD``, an ISO date-time, or ``7d``/``12h``/``30m``/``2w`` ago -> aware UTC datetime.

    A bare date is the start of that day in ``tz``; with ``end=True`` (``--until``) the day is
    included, i.e. the result is the start of the next day. Naive date-times are read in ``tz``.
    """
    zone = get_zone(tz)
    v = value.strip()
    m = _REL.match(v)
    if m:
        delta = timedelta(**{_SPAN[m.group(2)]: int(m.group(1))})
        now = now or datetime.now(timezone.utc)
        return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(timezone.utc) - delta
    try:
        if len(v) == 10:
            d = date.fromisoformat(v)
            if end:
                d += timedelta(days=1)
            return datetime.combine(d, time(0), tzinfo=zone).astimezone(timezone.utc)
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid date {value!r} for {option}: use YYYY-MM-DD, an ISO date-time "
            "(2026-11-29T08:00) or a span ago such as 7d, 12h, 30m, 2w"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.astimezone(timezone.utc)


def iso_z(dt: datetime) -> str:
    # Same layout as the ledger's started_at, so string comparison is time comparison.
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None  # inclusive, aware UTC
    until: datetime | None = None  # exclusive, aware UTC
    models: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    tz: str = "UTC"

    def where(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            parts.append("started_at >= ?")
            params.append(iso_z(self.since))
        if self.until is not None:
            parts.append("started_at < ?")
            params.append(iso_z(self.until))
        match, match_params = match_sql(self.models, self.tags)
        return (" WHERE " + " AND ".join(parts + match)) if parts or match else "", params + match_params


def build_filters(*, since: str | None = None, until: str | None = None, models: Sequence[str] = (),
                  tags: Sequence[str] = (), tz: str = "UTC", now: datetime | None = None) -> Filters:
    """Parse CLI-style strings into :class:`Filters` (UsageError on bad input)."""
    get_zone(tz)
    s = parse_when(since, tz=tz, now=now, option="--since") if since else None
    u = parse_when(until, tz=tz, end=True, now=now, option="--until") if until else None
    if s and u and s >= u:
        raise UsageError(f"--since {since} is not before --until {until}")
    return Filters(since=s, until=u, models=tuple(models), tags=parse_tags(tags), tz=tz)


def match_sql(models: Sequence[str], tags: Sequence[tuple[str, str]]) -> tuple[list[str], list[Any]]:
    """SQL conditions (to be ANDed) and their parameters for "one of these models, with all of these
    tags": a model matches the name the API returned or the one requested."""
    parts: list[str] = []
    params: list[Any] = []
    if models:
        marks = ", ".join("?" * len(models))
        parts.append(f"(model IN ({marks}) OR model_requested IN ({marks}))")
        params += list(models) * 2
    for k, v in tags:
        parts.append("json_extract(tags, ?) = ?")
        params += [json_path(k), v]
    return parts, params


def json_path(key: str) -> str:
    return '$."' + key.replace('"', '\\"') + '"'
