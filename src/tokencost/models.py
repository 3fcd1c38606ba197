"""The model registry: which tokenizer, context window and counting rules each OpenAI chat model uses.

One typed table (``MODELS``). Dated snapshots are the real models; an alias such as ``gpt-3.5-turbo``
is a row of its own whose ``points_to`` records which snapshot it served from which day, because the
API has moved aliases over time (and the prompt formula moved with them: ``gpt-3.5-turbo`` billed
the cookbook example at 127 tokens while it pointed to ``-0301`` and at 129 after it moved on).

Lookup is exact first (names and aliases), then ``ft:`` fine-tunes resolve to their base model, then
an unknown dated snapshot of a known alias (``gpt-4o-2099-01-01``) resolves to that alias with the
snapshot's own name (counts for it are then estimates). Anything else is ``UnknownModel`` with the
closest names.

Sources: context windows and output limits are OpenAI's model pages
(``https://platform.openai.com/docs/models/<name>``) and the deprecations page
(``https://platform.openai.com/docs/deprecations``) for retired snapshots; alias moves are from
OpenAI's announcements. DevDay (2023-11-06) announced that gpt-3.5-turbo would move to -1106 on
2023-12-11, but that move did not happen: OpenAI's "New embedding models and API updates" (2024-01-25)
says the alias "will be automatically upgraded from gpt-3.5-turbo-0613 to gpt-3.5-turbo-0125" two
weeks after launch (2024-02-16). Image rules are in ``images.py``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from datetime import date, datetime

from .errors import UnknownModel

__all__ = ["ModelInfo", "MODELS", "resolve_model", "known_models", "snapshot_at"]

# Formula families (counting.py keys its per-message constants on these).
LEGACY_0301 = "gpt-3.5-turbo-0301"  # 4 tokens per message, a name replaces the role (-1)
CHAT = "chat"  # 3 per message, +1 per name, +3 reply priming (every later chat model)
REASONING = "reasoning"  # o-series and gpt-5: same constants assumed, never verified

_DOCS = "https://platform.openai.com/docs/models/"
_DEPRECATIONS = "https://platform.openai.com/docs/deprecations"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # canonical name, e.g. "gpt-4-0613", "gpt-4o-2024-08-06", "gpt-4o"
    encoding: str  # "cl100k_base" | "o200k_base"
    context_window: int  # tokens
    max_output_tokens: int | None  # None: bounded only by the context window
    family: str  # formula family key used by counting.py
    aliases: tuple[str, ...] = ()
    snapshot_of: str | None = None  # for dated snapshots: the alias it belongs to ("gpt-4")
    points_to: tuple[tuple[str, str], ...] = ()  # for aliases: (ISO date from, snapshot), oldest first
    image: str | None = None  # image rule key in images.py; None = the model takes no images
    source: str = ""
    counts_as: str | None = None  # fine-tunes: the base snapshot whose verified rules apply

    @property
    def snapshot(self) -> str:
        """The dated snapshot this name bills as today (itself for a snapshot)."""
        if self.counts_as:
            return self.counts_as
        return self.points_to[-1][1] if self.points_to else self.name


def _snap(name: str, of: str, enc: str, ctx: int, out: int | None, family: str = CHAT,
          image: str | None = None, source: str = "") -> ModelInfo:
    return ModelInfo(name, enc, ctx, out, family, snapshot_of=of, image=image,
                     source=source or _DOCS + of)


def _alias(name: str, points_to: tuple[tuple[str, str], ...], aliases: tuple[str, ...] = (),
           source: str = "") -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], str]:
    return (name, points_to, aliases, source or _DOCS + name)


_CL, _O2 = "cl100k_base", "o200k_base"

_SNAPSHOTS: tuple[ModelInfo, ...] = (
    _snap("gpt-3.5-turbo-0301", "gpt-3.5-turbo", _CL, 4096, None, LEGACY_0301, source=_DEPRECATIONS),
    _snap("gpt-3.5-turbo-0613", "gpt-3.5-turbo", _CL, 4096, None, source=_DEPRECATIONS),
    _snap("gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k", _CL, 16385, None, source=_DEPRECATIONS),
    _snap("gpt-3.5-turbo-1106", "gpt-3.5-turbo", _CL, 16385, 4096),
    _snap("gpt-3.5-turbo-0125", "gpt-3.5-turbo", _CL, 16385, 4096),
    _snap("gpt-4-0314", "gpt-4", _CL, 8192, None, source=_DEPRECATIONS),
    _snap("gpt-4-0613", "gpt-4", _CL, 8192, 8192),
    _snap("gpt-4-32k-0314", "gpt-4-32k", _CL, 32768, None, source=_DEPRECATIONS),
    _snap("gpt-4-32k-0613", "gpt-4-32k", _CL, 32768, None, source=_DEPRECATIONS),
    _snap("gpt-4-1106-preview", "gpt-4-turbo-preview", _CL, 128000, 4096),
    _snap("gpt-4-0125-preview", "gpt-4-turbo-preview", _CL, 128000, 4096),
    _snap("gpt-4-1106-vision-preview", "gpt-4-vision-preview", _CL, 128000, 4096, image="tile-85",
          source=_DEPRECATIONS),
    _snap("gpt-4-turbo-2024-04-09", "gpt-4-turbo", _CL, 128000, 4096, image="tile-85"),
    _snap("gpt-4o-2024-05-13", "gpt-4o", _O2, 128000, 4096, image="tile-85"),
    _snap("gpt-4o-2024-08-06", "gpt-4o", _O2, 128000, 16384, image="tile-85"),
    _snap("gpt-4o-2024-11-20", "gpt-4o", _O2, 128000, 16384, image="tile-85"),
    _snap("gpt-4o-mini-2024-07-18", "gpt-4o-mini", _O2, 128000, 16384, image="tile-mini"),
    _snap("gpt-4.1-2025-04-14", "gpt-4.1", _O2, 1047576, 32768, image="tile-85"),
    _snap("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini", _O2, 1047576, 32768, image="patch-1.62"),
    _snap("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano", _O2, 1047576, 32768, image="patch-2.46"),
    _snap("gpt-4.5-preview-2025-02-27", "gpt-4.5-preview", _O2, 128000, 16384, image="tile-85",
          source=_DEPRECATIONS),
    _snap("o1-preview-2024-09-12", "o1-preview", _O2, 128000, 32768, REASONING, source=_DEPRECATIONS),
    _snap("o1-mini-2024-09-12", "o1-mini", _O2, 128000, 65536, REASONING),
    _snap("o1-2024-12-17", "o1", _O2, 200000, 100000, REASONING, image="tile-75"),
    _snap("o3-mini-2025-01-31", "o3-mini", _O2, 200000, 100000, REASONING),
    _snap("o3-2025-04-16", "o3", _O2, 200000, 100000, REASONING, image="tile-75"),
    _snap("o4-mini-2025-04-16", "o4-mini", _O2, 200000, 100000, REASONING, image="patch-1.72"),
    _snap("gpt-5-2025-08-07", "gpt-5", _O2, 400000, 128000, REASONING, image="tile-70"),
    _snap("gpt-5-mini-2025-08-07", "gpt-5-mini", _O2, 400000, 128000, REASONING, image="patch-1.2"),
    _snap("gpt-5-nano-2025-08-07", "gpt-5-nano", _O2, 400000, 128000, REASONING, image="patch-1.5"),
)

# Alias -> the snapshots it served, oldest first (the day it started pointing there).
_ALIASES = (
    _alias("gpt-3.5-turbo", (("2023-03-01", "gpt-3.5-turbo-0301"), ("2023-06-27", "gpt-3.5-turbo-0613"),
                             ("2024-02-16", "gpt-3.5-turbo-0125")),
           ("gpt-35-turbo",)),
    _alias("gpt-3.5-turbo-16k", (("2023-06-13", "gpt-3.5-turbo-16k-0613"),), ("gpt-35-turbo-16k",)),
    _alias("gpt-4", (("2023-03-14", "gpt-4-0314"), ("2023-06-27", "gpt-4-0613")), ("gpt-4-8k",)),
    _alias("gpt-4-32k", (("2023-03-14", "gpt-4-32k-0314"), ("2023-06-27", "gpt-4-32k-0613"))),
    _alias("gpt-4-turbo-preview", (("2023-11-06", "gpt-4-1106-preview"), ("2024-01-25", "gpt-4-0125-preview"))),
    _alias("gpt-4-vision-preview", (("2023-11-06", "gpt-4-1106-vision-preview"),)),
    _alias("gpt-4-turbo", (("2024-04-09", "gpt-4-turbo-2024-04-09"),)),
    _alias("gpt-4o", (("2024-05-13", "gpt-4o-2024-05-13"), ("2024-10-02", "gpt-4o-2024-08-06"))),
    _alias("gpt-4o-mini", (("2024-07-18", "gpt-4o-mini-2024-07-18"),)),
    _alias("gpt-4.1", (("2025-04-14", "gpt-4.1-2025-04-14"),)),
    _alias("gpt-4.1-mini", (("2025-04-14", "gpt-4.1-mini-2025-04-14"),)),
    _alias("gpt-4.1-nano", (("2025-04-14", "gpt-4.1-nano-2025-04-14"),)),
    _alias("gpt-4.5-preview", (("2025-02-27", "gpt-4.5-preview-2025-02-27"),)),
    _alias("o1-preview", (("2024-09-12", "o1-preview-2024-09-12"),)),
    _alias("o1-mini", (("2024-09-12", "o1-mini-2024-09-12"),)),
    _alias("o1", (("2024-12-17", "o1-2024-12-17"),)),
    _alias("o3-mini", (("2025-01-31", "o3-mini-2025-01-31"),)),
    _alias("o3", (("2025-04-16", "o3-2025-04-16"),)),
    _alias("o4-mini", (("2025-04-16", "o4-mini-2025-04-16"),)),
    _alias("gpt-5", (("2025-08-07", "gpt-5-2025-08-07"),)),
    _alias("gpt-5-mini", (("2025-08-07", "gpt-5-mini-2025-08-07"),)),
    _alias("gpt-5-nano", (("2025-08-07", "gpt-5-nano-2025-08-07"),)),
)

_BY_SNAPSHOT = {m.name: m for m in _SNAPSHOTS}


def _alias_info(name: str, points_to: tuple[tuple[str, str], ...], aliases: tuple[str, ...],
                source: str) -> ModelInfo:
    # An alias bills like the snapshot it serves today; the row keeps its own name.
    now = _BY_SNAPSHOT[points_to[-1][1]]
    return replace(now, name=name, aliases=aliases, snapshot_of=None, points_to=points_to, source=source)


MODELS: tuple[ModelInfo, ...] = _SNAPSHOTS + tuple(_alias_info(*a) for a in _ALIASES)

_LOOKUP: dict[str, ModelInfo] = {}
for _m in MODELS:
    _LOOKUP[_m.name] = _m
    for _a in _m.aliases:
        _LOOKUP[_a] = _m
_ALIAS_NAMES = sorted((m.name for m in MODELS if m.points_to), key=len, reverse=True)
# "<alias>-YYYY-MM-DD" or "<alias>-MMDD": a snapshot of a known alias that this table predates.
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def known_models() -> list[str]:
    """Every name ``resolve_model`` accepts exactly (snapshots, aliases and their alternate names)."""
    return sorted(_LOOKUP)


def resolve_model(name: str) -> ModelInfo:
    """The registry row for ``name``: exact, alias, ``ft:`` fine-tune, or unknown dated snapshot."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownModel(str(name), [])
    key = name.strip()
    info = _LOOKUP.get(key) or _LOOKUP.get(key.lower())
    if info is not None:
        return info
    if key.startswith("ft:"):
        # ft:<base>:<org>:<suffix>:<id> — billed with the base model's tokenizer and format.
        base = key.split(":")[1] if key.count(":") >= 1 else ""
        if base:
            try:
                base_info = resolve_model(base)
                return replace(base_info, name=key, aliases=(), counts_as=base_info.snapshot)
            except UnknownModel:
                pass
    m = _DATED.search(key)
    if m:
        stem = key[: m.start()]
        if stem in _LOOKUP and _LOOKUP[stem].points_to:
            return replace(_LOOKUP[stem], name=key, aliases=(), snapshot_of=_LOOKUP[stem].name, points_to=())
    raise UnknownModel(name, difflib.get_close_matches(key, known_models(), n=3, cutoff=0.6))


def snapshot_at(name: str, at: date | datetime | str) -> ModelInfo:
    """The snapshot ``name`` served on day ``at`` (aliases moved over time; snapshots never do)."""
    info = resolve_model(name)
    if not info.points_to:
        return info
    day = (at.date() if isinstance(at, datetime) else at) if not isinstance(at, str) else date.fromisoformat(at)
    current = info.points_to[0][1]
    for since, snapshot in info.points_to:
        if date.fromisoformat(since) <= day:
            current = snapshot
    return _BY_SNAPSHOT[current]
