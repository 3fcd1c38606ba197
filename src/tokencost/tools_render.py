"""The hidden text the API builds from ``functions`` / ``tools``: a TypeScript-like namespace.

The Chat Completions API does not show the model the JSON schemas; it renders them as::

    namespace functions {

    // Get the current weather in a given location
    type get_current_weather = (_: {
    // The city and state, e.g. San Francisco, CA
    location: string,
    unit?: "celsius" | "fahrenheit",
    }) => any;

    } // namespace functions

This rendering is hmarr/openai-chat-tokens' ``src/functions.ts`` (MIT) and its CodeRabbit fork
(``anyOf`` as a union; descriptions of properties nested inside objects are dropped), whose
API-validated tests and the OpenAI cookbook's tool example are reproduced by it (see counting.py).

``render_functions`` also reports the JSON-schema keywords it met that no verified case covers
(``default``, ``format``, ``minimum``, ``$ref`` ...): the API may render those, so a count using them
is an estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import InputError

__all__ = ["render_functions", "read_tools", "ToolsBlock", "VERIFIED_KEYWORDS", "NESTED_DESCRIPTIONS"]

NESTED_DESCRIPTIONS = "descriptions inside nested objects"

# Schema keywords that appear in API-validated cases (everything else makes the count an estimate).
VERIFIED_KEYWORDS = frozenset(
    {"type", "properties", "required", "description", "enum", "items", "anyOf", "const",
     "additionalProperties"}
)


def _literal(v: Any, quote: bool) -> str:
    # As JavaScript's template literals print them (the reference renderer is TypeScript).
    if isinstance(v, str):
        return f'"{v}"' if quote else v
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _fmt_enum(values: list[Any], quote: bool) -> str:
    return " | ".join(_literal(v, quote) for v in values)


def _type(prop: dict[str, Any], indent: int, unverified: set[str]) -> str:
    unverified.update(k for k in prop if k not in VERIFIED_KEYWORDS)
    if isinstance(prop.get("anyOf"), list):
        return " | ".join(_type(p, indent, unverified) if isinstance(p, dict) else "any" for p in prop["anyOf"])
    t = prop.get("type")
    enum = prop.get("enum")
    if isinstance(t, list):  # ["string", "null"]: not covered by a verified case
        unverified.add("type: [...]")
        return " | ".join(_type({**prop, "type": x}, indent, unverified) for x in t)
    if t == "string":
        return _fmt_enum(enum, True) if isinstance(enum, list) else "string"
    if t in ("number", "integer"):
        return _fmt_enum(enum, False) if isinstance(enum, list) else "number"
    if t in ("boolean", "null"):
        return t
    if t == "object":
        return "{\n" + _props(prop, indent + 2, unverified) + "\n}"
    if t == "array":
        items = prop.get("items")
        return (_type(items, indent, unverified) + "[]") if isinstance(items, dict) else "any[]"
    if isinstance(enum, list):
        return _fmt_enum(enum, True)
    unverified.add(f"type {t!r}" if t is not None else "a property without a type")
    return "any"


def _props(obj: dict[str, Any], indent: int, unverified: set[str]) -> str:
    props = obj.get("properties") or {}
    required = obj.get("required") or ()
    lines: list[str] = []
    for name, prop in props.items():
        if not isinstance(prop, dict):
            prop = {}
        desc = prop.get("description")
        if desc and indent < 2:
            lines.append(f"// {desc}")
        elif desc:  # dropped in every verified case; one unverified report disagrees
            unverified.add(NESTED_DESCRIPTIONS)
        mark = "" if name in required else "?"
        lines.append(f"{name}{mark}: {_type(prop, indent, unverified)},")
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def render_functions(functions: list[dict[str, Any]]) -> tuple[str, set[str]]:
    """(namespace text, schema keywords met that no verified case covers)."""
    unverified: set[str] = set()
    lines = ["namespace functions {", ""]
    for f in functions:
        desc = f.get("description")
        if desc:
            lines.append(f"// {desc}")
        params = f.get("parameters") or {}
        unverified.update(k for k in params if k not in VERIFIED_KEYWORDS)
        if params.get("properties"):
            lines.append(f"type {f['name']} = (_: {{")
            lines.append(_props(params, 0, unverified))
            lines.append("}) => any;")
        else:
            lines.append(f"type {f['name']} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines), unverified


@dataclass
class ToolsBlock:
    """What a request's ``functions``/``tools`` (and ``function_call``/``tool_choice``) add."""

    text: str = ""  # the hidden namespace text ("" when there are no definitions)
    fixed: int = 0  # constant tokens: +9 for the block, plus function_call / tool_choice
    rules: set[str] = field(default_factory=set)  # evidence keys (counting.VERIFIED)
    notes: list[str] = field(default_factory=list)  # why the count is an estimate, if it is


def read_tools(body: dict[str, Any], count: Callable[[str], int]) -> ToolsBlock:
    """Validate and render a request's function definitions; ``count`` encodes short strings."""
    block = ToolsBlock()
    functions, tools = body.get("functions"), body.get("tools")
    fdefs: list[dict[str, Any]] = []
    if functions:
        if not isinstance(functions, list):
            raise InputError('"functions" must be a list of {"name", "description", "parameters"}')
        fdefs += [_fdef(f, f"functions[{i}]") for i, f in enumerate(functions)]
        block.rules.add("functions")
    if tools:
        if not isinstance(tools, list):
            raise InputError('"tools" must be a list of {"type": "function", "function": {...}}')
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or t.get("type", "function") != "function":
                kind = t.get("type") if isinstance(t, dict) else type(t).__name__
                raise InputError(f"tools[{i}]: only function tools can be counted (got {kind!r}); "
                                 'give {"type": "function", "function": {"name": ..., "parameters": ...}}')
            fdefs.append(_fdef(t.get("function"), f"tools[{i}].function"))
        block.rules.add("tools")
    if fdefs:
        block.text, unverified = render_functions(fdefs)
        block.fixed += 9
        if NESTED_DESCRIPTIONS in unverified:
            unverified.discard(NESTED_DESCRIPTIONS)
            block.rules.add("nested_descriptions")
        if unverified:
            block.notes.append("tool schemas use " + ", ".join(sorted(unverified))
                               + ", which no API-verified case covers (estimate)")
        if any(f.get("strict") for f in fdefs):
            block.notes.append("strict function schemas are rendered like normal ones (unverified estimate)")
    block.fixed += _choice(body, bool(functions), bool(tools), block, count)
    return block


def _fdef(f: Any, where: str) -> dict[str, Any]:
    if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
        raise InputError(f'{where}: a function needs a "name" string (and optional "description", "parameters")')
    if f.get("parameters") is not None and not isinstance(f["parameters"], dict):
        raise InputError(f'{where}: "parameters" must be a JSON-schema object')
    return f


def _choice(body: dict[str, Any], has_functions: bool, has_tools: bool, block: ToolsBlock,
            count: Callable[[str], int]) -> int:
    fc, tc = body.get("function_call"), body.get("tool_choice")
    extra = 0
    if fc is not None and has_functions:
        if fc == "none":
            extra += 1
        elif isinstance(fc, dict) and isinstance(fc.get("name"), str):
            extra += 4 + count(fc["name"])
        elif fc != "auto":
            raise InputError('"function_call" must be "auto", "none" or {"name": ...}')
    if tc is not None and has_tools:
        fn = tc.get("function") if isinstance(tc, dict) else None
        if tc == "none":
            extra += 1
            block.rules.add("tool_choice")
        elif isinstance(fn, dict) and isinstance(fn.get("name"), str):
            extra += 7 + count(fn["name"])
            block.rules.add("tool_choice")
        elif tc == "required":
            block.notes.append('tool_choice "required" is counted as 0 tokens (no API-verified case)')
        elif tc != "auto":
            raise InputError('"tool_choice" must be "auto", "none", "required" or '
                             '{"type": "function", "function": {"name": ...}}')
    return extra
