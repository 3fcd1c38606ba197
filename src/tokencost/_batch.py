"""Token counts of many texts at once: the batch behind every count in :mod:`tokencost.counting`.

Large batches are split over a thread pool (tiktoken releases the GIL while it encodes); small
ones are encoded in place, where a thread hand-off would cost more than it saves. With
``memo=True`` texts counted before are looked up in :mod:`tokencost._memo` instead.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from . import _memo
from .encodings import get_encoding

__all__ = ["lengths"]


_pool = None
_PARALLEL_CHARS = 100_000  # below this, a thread hand-off costs more than it saves


def lengths(encoding: str, texts: list[str], memo: bool = False) -> list[int]:
    """Token counts of ``texts`` in ``encoding``, in order."""
    if memo:
        return _memo.lengths(encoding, texts, lambda missing: lengths(encoding, missing))
    enc = get_encoding(encoding)
    if len(texts) < 2 or sum(map(len, texts)) < _PARALLEL_CHARS:
        return _encode_lengths(enc, texts)
    workers = _workers()
    if workers == 1 or len(texts) < 2 * workers:
        return _encode_lengths(enc, texts)
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokencost-count")
    size = -(-len(texts) // (workers * 4))
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    out: list[int] = []
    for part in _pool.map(_encode_lengths, [enc] * len(chunks), chunks):
        out.extend(part)
    return out


@functools.lru_cache(maxsize=1)
def _workers() -> int:
    return os.cpu_count() or 1  # glibc reads /sys for this: three system calls, so ask once


def _encode_lengths(enc: Any, texts: list[str]) -> list[int]:
    core = getattr(enc, "_core_bpe", None)
    if core is None:
        return [len(enc.encode_ordinary(t)) if t else 0 for t in texts]
    fast = core.encode_ordinary
    out = []
    for t in texts:
        try:
            out.append(len(fast(t)) if t else 0)
        except UnicodeEncodeError:  # lone surrogates: tiktoken's wrapper knows how to repair them
            out.append(len(enc.encode_ordinary(t)))
    return out
