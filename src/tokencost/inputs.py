"""Reading requests from files: a request body, a bare list of messages, JSONL of bodies, or stdin.

Every error names where it happened (``file:line:column`` for bad JSON, ``file line N`` for a JSONL
line) and how to fix it; nothing here prints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["LoadedRequest", "load_requests", "parse_requests", "normalize_request"]

_SHAPE_HINT = (
    'expected a request body {"model": ..., "messages": [...]}, a list of messages, '
    "or JSONL with one request body per line"
)


@dataclass(frozen=True)
class LoadedRequest:
    body: dict[str, Any]  # always has "messages"
    where: str  # "conversation.json" or "requests.jsonl line 7"


def load_requests(path: str | Path) -> list[LoadedRequest]:
    """Read FILE (or ``-`` for stdin) into request bodies."""
    name = str(path)
    if name == "-":
        return parse_requests(sys.stdin.read(), "<stdin>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory; give a .json or .jsonl file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", where=name) from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}") from None
    return parse_requests(text, name, jsonl=p.suffix.lower() == ".jsonl")


def parse_requests(text: str, name: str, *, jsonl: bool | None = None) -> list[LoadedRequest]:
    if not text.strip():
        raise InputError(f"file is empty; {_SHAPE_HINT}", where=name)
    if not jsonl:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if jsonl is None and len(lines) > 1 and exc.lineno > 1 and _first_line_is_json(lines[0]):
                return _parse_jsonl(text, name)
            raise InputError(f"invalid JSON: {exc.msg}", where=f"{name}:{exc.lineno}:{exc.colno}") from None
        return _from_document(data, name)
    return _parse_jsonl(text, name)


def _first_line_is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def _parse_jsonl(text: str, name: str) -> list[LoadedRequest]:
    out: list[LoadedRequest] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON at column {exc.colno}: {exc.msg}; each line must be one request body",
                where=where,
            ) from None
        out.append(LoadedRequest(normalize_request(data, where), where))
    if not out:
        raise InputError(f"no requests found; {_SHAPE_HINT}", where=name)
    return out


def _from_document(data: Any, name: str) -> list[LoadedRequest]:
    if isinstance(data, list) and data and all(isinstance(x, dict) and "messages" in x for x in data):
        return [
            LoadedRequest(normalize_request(x, f"{name} request {i}"), f"{name} request {i}")
            for i, x in enumerate(data)
        ]
    return [LoadedRequest(normalize_request(data, name), name)]


def normalize_request(data: Any, where: str) -> dict[str, Any]:
    """A request body with a ``messages`` list; a bare list of messages becomes ``{"messages": ...}``."""
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict):
        raise InputError(f"found a JSON {type(data).__name__}; {_SHAPE_HINT}", where=where)
    messages = data.get("messages")
    if messages is None:
        raise InputError(f'no "messages" key; {_SHAPE_HINT}', where=where)
    if not isinstance(messages, list):
        raise InputError(f'"messages" must be a list, found {type(messages).__name__}', where=where)
    if not messages:
        raise InputError('"messages" is empty; add at least one message', where=where)
    for key in ("max_tokens", "max_completion_tokens"):
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InputError(f'"{key}" must be a non-negative integer, found {value!r}', where=where)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError(f'"model" must be a string, found {model!r}', where=where)
    return data
