"""Reproduce ``usage.prompt_tokens`` of a Chat Completions request, offline.

Every rule below was read off requests whose prompt_tokens the API reported in public. A count is
``exact`` only when every rule it used was verified on the snapshot being counted; otherwise it is an
estimate and ``notes`` say which rule was not.

| rule            | what it adds                                                        | verified on (API-reported) |
|-----------------|---------------------------------------------------------------------|----------------------------|
| messages        | 3 per message + role + content; +3 reply priming                     | [C] gpt-3.5-turbo-0613/0125, gpt-4-0314/0613, gpt-4o, gpt-4o-mini; [V] gpt-4-turbo-2024-04-09, gpt-4o-*, gpt-4.1, gpt-4.5 |
| names           | name tokens + 1                                                      | [C] as above |
| legacy-0301     | gpt-3.5-turbo-0301: 4 per message, name tokens - 1                   | [C] 127-token example |
| functions       | namespace text (tools_render) + 9; -4 and a "\\n" after the first     | [H] gpt-3.5-turbo-0613 (2023), -0125 (fork, 2024) |
|                 | system message when one exists; function_call none +1, {name} +4+name;|                            |
|                 | function messages 3 + name + content; assistant function_call        |                            |
|                 | name + arguments + 3                                                 |                            |
| nested_descr.   | descriptions of properties inside nested objects are not rendered    | [H] (CodeRabbit cases 46, 96) |
| tools           | the same namespace for ``tools``                                     | [C] gpt-3.5-turbo-0125, gpt-4-0613 (105), gpt-4o, gpt-4o-mini (101) |
| tool_choice     | "none" +1; {"function": {name}} name + 7                              | none: [P] deltas, model unnamed |
| tool_messages   | assistant tool_calls name + arguments + 3; tool message 3 + the      | [F] gpt-4-0613 (35), one call |
|                 | called function's name + content                                     |                            |
| image_parts     | content as [text, image_url]: text + image tokens                    | [V] 128x64 on the vision models above |
| image:<rule>    | images.py tile / patch formulas                                      | [V], [D] (images.py) |

[C] OpenAI cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb, printed "prompt tokens counted by
    the OpenAI API": https://github.com/openai/openai-cookbook/blob/main/examples/How_to_count_tokens_with_tiktoken.ipynb
[H] hmarr/openai-chat-tokens tests/token-counts.test.ts and the coderabbitai fork's
    src/token-counts.test.ts (validated against gpt-3.5-turbo): https://github.com/hmarr/openai-chat-tokens
[P] pamelafox/openai-messages-token-helper tests/functions.py, checked by tests/verify_functions.py:
    https://github.com/pamelafox/openai-messages-token-helper
[F] forestwanglin/openai-java issue #5 (gpt-4, "OpenAI Count: 35"): https://github.com/forestwanglin/openai-java/issues/5
[V] https://community.openai.com/t/1262691 (128x64 image + 5-word text, low/high, per model)
[D] https://platform.openai.com/docs/guides/images-vision (worked examples)

Not covered by any public API number (always estimates): o-series and gpt-5 message framing, several
text parts in one message, parallel tool calls, tool_choice, schema keywords beyond VERIFIED_KEYWORDS,
gpt-4-32k (same format as gpt-4, but no published count), patch-based image models.

Speed: every string of every request is collected first and encoded in one batch (a thread pool for
large batches), so counting costs little more than encoding the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import images as _images
from ._batch import lengths as _lengths
from .encodings import get_encoding
from .errors import InputError
from .models import LEGACY_0301, ModelInfo, resolve_model
from .tools_render import read_tools

__all__ = ["MessageCount", "PromptCount", "count_text_tokens", "count_prompt_tokens", "count_prompt",
           "count_prompts", "VERIFIED"]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")

_GPT4O_LIKE = {"gpt-4o-2024-05-13", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "gpt-4-turbo-2024-04-09",
               "gpt-4.1-2025-04-14", "gpt-4.5-preview-2025-02-27"}
_COOKBOOK = {"gpt-3.5-turbo-0613", "gpt-3.5-turbo-0125", "gpt-4-0314", "gpt-4-0613", "gpt-4o-2024-08-06",
             "gpt-4o-mini-2024-07-18"}

# rule -> snapshots on which a public API-reported count confirms it.
VERIFIED: dict[str, frozenset[str]] = {
    "messages": frozenset(_COOKBOOK | _GPT4O_LIKE | {"gpt-4o-mini-2024-07-18"}),
    "names": frozenset(_COOKBOOK | {"gpt-3.5-turbo-0301"}),
    "legacy-0301": frozenset({"gpt-3.5-turbo-0301"}),
    # hmarr's cases were validated in 2023 (alias -> -0613), the CodeRabbit fork's in 2024 (-> -0125).
    "functions": frozenset({"gpt-3.5-turbo-0613", "gpt-3.5-turbo-0125"}),
    "nested_descriptions": frozenset({"gpt-3.5-turbo-0613", "gpt-3.5-turbo-0125"}),
    "tools": frozenset({"gpt-3.5-turbo-0125", "gpt-4-0613", "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"}),
    # +1 / +7+name are consistent deltas in pamelafox's API-checked cases, but the model is not named.
    "tool_choice": frozenset(),
    "tool_messages": frozenset({"gpt-4-0613"}),
    "image_parts": frozenset(_GPT4O_LIKE | {"gpt-4o-mini-2024-07-18"}),
    "image:tile-85": frozenset(_GPT4O_LIKE),
    "image:tile-mini": frozenset({"gpt-4o-mini-2024-07-18"}),
}

_RULE_TEXT = {
    "messages": "the per-message format",
    "names": "the name field",
    "legacy-0301": "the gpt-3.5-turbo-0301 format",
    "functions": "functions / function_call / function messages",
    "tools": "the tools block",
    "tool_choice": "tool_choice",
    "nested_descriptions": "dropping descriptions inside nested objects",
    "tool_messages": "tool_calls / tool messages",
    "image_parts": "multi-part content",
}


@dataclass(frozen=True)
class MessageCount:
    index: int
    role: str
    content_tokens: int
    name_tokens: int
    overhead_tokens: int  # the message frame: per-message tokens and the role
    image_tokens: int
    tool_call_tokens: int
    total: int


@dataclass(frozen=True)
class PromptCount:
    model: str
    encoding: str
    messages: tuple[MessageCount, ...]
    tools_tokens: int  # hidden rendering of functions/tools (+ function_call/tool_choice)
    priming_tokens: int  # reply priming (3 for every chat model)
    total: int
    exact: bool  # every rule used is verified against API-reported numbers for this snapshot
    notes: tuple[str, ...]


def count_text_tokens(text: str, model: str, *, memo: bool = False) -> int:
    """Tokens of plain ``text`` in ``model``'s encoding (no message framing).

    ``memo=True`` remembers the count, so the same text costs a dict lookup next time."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    encoding = resolve_model(model).encoding
    if memo:
        return _lengths(encoding, [text], memo=True)[0]
    return len(get_encoding(encoding).encode_ordinary(text))


def count_prompt_tokens(request_or_messages: dict | list, model: str | None = None, *,
                        image_sizes: dict[str, tuple[int, int]] | None = None, memo: bool = False) -> int:
    """``usage.prompt_tokens`` the API would report for this request (or bare list of messages).

    ``memo=True`` remembers the counts of the texts it encodes (for the same history sent again,
    as a chatbot does every turn); the total is the same either way."""
    total = _plain_total(request_or_messages, model, memo)
    if total is not None:
        return total
    plan = _Plan(request_or_messages, model, image_sizes)
    return plan.total(_lengths(plan.info.encoding, plan.texts, memo))


_PLAIN_ROLES = frozenset(("system", "developer", "user", "assistant"))


def _plain_total(req: Any, model: str | None, memo: bool) -> int | None:
    """The total for the commonest request — only ``{"role", "content": str}`` messages, no
    functions or tools, a non-0301 model — without building a plan; None for anything else
    (which :class:`_Plan` then counts, and validates). Same frame and priming as the plan."""
    if type(req) is dict:
        if req.get("tools") or req.get("functions"):
            return None
        messages = req.get("messages")
        model = model or req.get("model")
    else:
        messages = req
    if type(messages) is not list or not model:
        return None
    info = resolve_model(model)
    if info.family == LEGACY_0301:
        return None
    encoding = info.encoding
    per_message = _frame(info)[0]
    texts = []
    frames = 0
    for m in messages:
        if type(m) is not dict or len(m) != 2:
            return None
        role, content = m.get("role"), m.get("content")
        if type(content) is not str or type(role) is not str or role not in _PLAIN_ROLES:
            return None  # the plan counts it, or says what is wrong with it
        texts.append(content)
        frames += per_message + _role_tokens(encoding, role)
    return frames + sum(_lengths(encoding, texts, memo)) + _PRIMING


def _frame(info: ModelInfo) -> tuple[int, int]:
    """(tokens per message, tokens per name) of the model's chat format (cookbook, 0301 apart)."""
    return (4, -1) if info.family == LEGACY_0301 else (3, 1)


def count_prompt(request_or_messages: dict | list, model: str | None = None, *,
                 image_sizes: dict[str, tuple[int, int]] | None = None) -> PromptCount:
    """The prompt count with its breakdown, exactness and notes."""
    return count_prompts([request_or_messages], model, image_sizes=image_sizes)[0]


def count_prompts(requests: list, model: str | None = None, *,
                  image_sizes: dict[str, tuple[int, int]] | None = None, memo: bool = False) -> list[PromptCount]:
    """Count many requests at once: all their text is encoded in one batch per encoding (fastest)."""
    by_encoding: dict[str, list[str]] = {}
    plans = []
    for req in requests:
        plan = _Plan(req, model, image_sizes)
        texts = by_encoding.setdefault(plan.info.encoding, [])
        plan.base = len(texts)
        texts.extend(plan.texts)
        plans.append(plan)
    lengths = {name: _lengths(name, texts, memo) for name, texts in by_encoding.items()}
    return [p.finish(lengths[p.info.encoding]) for p in plans]


# ---------------------------------------------------------------------------------------------------
# One request: validate and collect strings (plan), then add up (finish)

_NO_NAME = -1


class _Plan:
    """A request read once: strings to encode in ``texts`` and, per message, where its parts are."""

    def __init__(self, req: Any, model: str | None, image_sizes: dict[str, tuple[int, int]] | None) -> None:
        if isinstance(req, list):
            body: dict[str, Any] = {}
            messages = req
        elif isinstance(req, dict):
            body = req
            messages = req.get("messages")
            if not isinstance(messages, list):
                raise InputError('the request has no "messages" list; give {"model": ..., "messages": [...]} '
                                 "or a bare list of messages")
        else:
            raise InputError(f"expected a request object or a list of messages, got {type(req).__name__}")
        name = model or body.get("model")
        if not name:
            raise InputError('no model given; add "model" to the request or pass model=...')
        self.info: ModelInfo = resolve_model(name)
        self.base = 0
        self.texts: list[str] = []
        self.rules: set[str] = {"legacy-0301" if self.info.family == LEGACY_0301 else "messages"}
        self.notes: list[str] = []
        self.image_sizes = image_sizes or {}
        tools = read_tools(body, self._const)
        self.rules |= tools.rules
        self.notes += tools.notes
        self.tools_fixed = tools.fixed
        self.tools_text = self._add(tools.text) if tools.text else -1
        self.msgs: list[tuple] = []
        self._messages(messages, bool(tools.text))

    # -- messages ----------------------------------------------------------------------------------
    def _messages(self, messages: list[Any], has_fns: bool) -> None:
        per_message, per_name = _frame(self.info)
        padded = not has_fns  # the first system message gets "\n" when functions are present
        call_names: dict[str, str] = {}
        add = self._add
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise InputError(f'messages[{i}]: expected an object with "role" and "content", '
                                 f"got {type(m).__name__}")
            role = m.get("role")
            if role not in ROLES:
                raise InputError(f"messages[{i}]: unknown role {role!r} (expected system, developer, user, "
                                 "assistant, tool or function)")
            content = m.get("content")
            overhead = per_message + _role_tokens(self.info.encoding, role)
            name_idx, name_const, images, calls = _NO_NAME, 0, 0, []
            if type(content) is str:
                if not padded and role == "system":
                    content += "\n"
                    padded = True
                parts = [add(content)]
            elif content is None:
                if role not in ("assistant", "function"):
                    raise InputError(f'messages[{i}]: a {role} message needs "content" (a string or a list '
                                     "of parts); only assistant messages may leave it null")
                parts = []
            elif isinstance(content, list):
                parts, images = self._parts(i, content)
                if not padded and role == "system":
                    self.notes.append("the system message's text parts were not padded like a string (estimate)")
                    padded = True
            else:
                raise InputError(f"messages[{i}]: content must be a string, null or a list of parts, "
                                 f"got {type(content).__name__}")
            name = m.get("name")
            if name is not None and not isinstance(name, str):
                raise InputError(f'messages[{i}]: "name" must be a string')
            if role == "function":
                # The function's name stands where the role would be (3 + name + content).
                if not name:
                    raise InputError(f'messages[{i}]: a function message needs the "name" of the function')
                self.rules.add("functions")
                overhead += per_name - 2
                name_idx = add(name)
            elif role == "tool":
                self.rules.add("tool_messages")
                if not isinstance(m.get("tool_call_id"), str):
                    raise InputError(f'messages[{i}]: a tool message needs "tool_call_id" (the id of the '
                                     "assistant's tool call it answers)")
                fn_name = call_names.get(m["tool_call_id"]) or name
                if fn_name:
                    overhead += per_name - 2
                    name_idx = add(fn_name)
                else:
                    self.notes.append(f"messages[{i}]: no earlier tool call with id {m['tool_call_id']!r}; "
                                      "its function name is not counted (estimate)")
            elif name:
                self.rules.add("names")
                name_idx, name_const = add(name), per_name
            if role == "assistant":
                calls = self._calls(i, m, call_names)
            self.msgs.append((i, role, parts, name_idx, name_const, overhead, images, calls))
        self.has_system = any(r[1] == "system" for r in self.msgs)

    def _parts(self, i: int, content: list[Any]) -> tuple[list[int], int]:
        texts: list[int] = []
        images = 0
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "refusal"):
                text = part.get(kind)
                if not isinstance(text, str):
                    raise InputError(f'messages[{i}].content[{j}]: a {kind} part needs a "{kind}" string')
                texts.append(self._add(text))
            elif kind == "image_url":
                images += self._image(i, j, part.get("image_url"))
            else:
                raise InputError(f"messages[{i}].content[{j}]: cannot count a part of type {kind!r} "
                                 '(supported: "text", "image_url", "refusal")')
        self.rules.add("image_parts")
        if len(texts) > 1:
            self.notes.append(f"messages[{i}]: several text parts are counted separately (no API-verified case)")
        return texts, images

    def _image(self, i: int, j: int, spec: Any) -> int:
        where = f"messages[{i}].content[{j}]"
        if isinstance(spec, str):
            spec = {"url": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise InputError(f'{where}: an image_url part needs {{"url": ...}}')
        rule = self.info.image
        if rule is None:
            raise InputError(f"{where}: {self.info.name} does not accept images; count with a vision model "
                             "such as gpt-4o")
        detail = spec.get("detail") or "auto"
        if detail not in _images.TILE_DETAILS:
            raise InputError(f'{where}: detail must be "low", "high" or "auto", got {detail!r}')
        self.rules.add("image:" + rule)
        url = spec["url"]
        size = None
        if _images.needs_size(rule, detail):
            size = self.image_sizes.get(url)
            if size is None and url.startswith("data:"):
                try:
                    size = _images.data_url_size(url)
                except ValueError as exc:
                    raise InputError(f"{where}: the image {exc}") from None
            if size is None:
                shown = url if len(url) <= 60 else url[:57] + "..."
                raise InputError(f"{where}: the size of {shown} is unknown and is never fetched; give it "
                                 "(--image-size URL=WxH, or image_sizes={url: (w, h)}) or embed a data: URL")
        return _images.image_tokens(rule, detail, size)

    def _calls(self, i: int, m: dict[str, Any], call_names: dict[str, str]) -> list[int]:
        out: list[int] = []
        fc = m.get("function_call")
        if fc is not None:
            self.rules.add("functions")
            out += self._call(f"messages[{i}].function_call", fc)
        tool_calls = m.get("tool_calls")
        if tool_calls:
            if not isinstance(tool_calls, list):
                raise InputError(f'messages[{i}]: "tool_calls" must be a list')
            self.rules.add("tool_messages")
            if len(tool_calls) > 1:
                self.notes.append(f"messages[{i}]: {len(tool_calls)} parallel tool calls are counted one by one "
                                  "(no API-verified case)")
            for k, call in enumerate(tool_calls):
                fn = call.get("function") if isinstance(call, dict) else None
                out += self._call(f"messages[{i}].tool_calls[{k}].function", fn)
                if isinstance(call.get("id"), str):
                    call_names[call["id"]] = fn["name"]
        return out

    def _call(self, where: str, fn: Any) -> list[int]:
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(
                fn.get("arguments", ""), str):
            raise InputError(f'{where}: needs {{"name": ..., "arguments": "<JSON string>"}}')
        return [self._add(fn["name"]), self._add(fn.get("arguments", ""))]

    def _add(self, text: str) -> int:
        self.texts.append(text)
        return len(self.texts) - 1

    def _const(self, text: str) -> int:
        return len(get_encoding(self.info.encoding).encode_ordinary(text))

    # -- add up ------------------------------------------------------------------------------------
    def finish(self, lengths: list[int]) -> PromptCount:
        b = self.base
        counted: list[MessageCount] = []
        running = 0
        for msg in self.msgs:
            content, name, call_tokens = _tally(lengths, b, msg)
            i, role, _, _, _, overhead, images, _ = msg
            total = content + name + overhead + images + call_tokens
            running += total
            counted.append(MessageCount(i, role, content, name, overhead, images, call_tokens, total))
        tools = self._tools(lengths)
        priming = _PRIMING
        snapshot = self.info.snapshot
        notes = list(self.notes)
        exact = not notes
        for rule in sorted(self.rules):
            if snapshot not in VERIFIED.get(rule, ()):
                exact = False
                what = _RULE_TEXT.get(rule) or f"the {rule.split(':', 1)[-1]} image formula"
                notes.append(f"{what} has no API-reported count for {snapshot} (estimate)")
        return PromptCount(self.info.name, self.info.encoding, tuple(counted), tools, priming,
                           running + tools + priming, exact, tuple(notes))

    def total(self, lengths: list[int]) -> int:
        """``finish(lengths).total`` without the breakdown (what the wrapper and the proxy need)."""
        b = self.base
        running = 0
        for msg in self.msgs:
            content, name, call_tokens = _tally(lengths, b, msg)
            running += content + name + msg[5] + msg[6] + call_tokens
        return running + self._tools(lengths) + _PRIMING

    def _tools(self, lengths: list[int]) -> int:
        if self.tools_text >= 0:
            return lengths[self.base + self.tools_text] + self.tools_fixed - (4 if self.has_system else 0)
        return self.tools_fixed


_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>


def _tally(lengths: list[int], b: int, msg: tuple) -> tuple[int, int, int]:
    """(content, name, tool call) tokens of one planned message."""
    _, _, parts, name_idx, name_const, _, _, calls = msg
    content = lengths[b + parts[0]] if len(parts) == 1 else sum(lengths[b + p] for p in parts)
    name = (lengths[b + name_idx] + name_const) if name_idx != _NO_NAME else 0
    call_tokens = (sum(lengths[b + c] for c in calls) + 3 * (len(calls) // 2)) if calls else 0
    return content, name, call_tokens


_role_cache: dict[tuple[str, str], int] = {}


def _role_tokens(encoding: str, role: str) -> int:
    key = (encoding, role)
    n = _role_cache.get(key)
    if n is None:
        n = _role_cache[key] = len(get_encoding(encoding).encode_ordinary(role))
    return n
