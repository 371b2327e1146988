"""Recognise how a row is laid out and convert it to the canonical conversation.

Layouts (detected per row from its keys, or named with `--format`):
  openai    `messages` of {role, content}: OpenAI chat (tool_calls, reasoning_content, tools), and the role names
            LLaMA-Factory (function_call, observation) and SWIFT (tool_call, tool_response) write
  sharegpt  `conversations` of {from, value} with tags such as human/gpt/function_call/observation (`--role`
            maps custom tags)
  alpaca    instruction / input / output / system / history
  prompt    prompt / completion (TRL), query / response (SWIFT), prompt / chosen / rejected

Kinds (detected from the first row, or named with `--kind`): `sft` conversations that end with the assistant
turn to learn from; `preference` a prompt with a chosen and a rejected answer; `rl` prompts that end with the
user turn, carrying reference fields (such as `solution`) that reward functions read.

The canonical row, one JSON object per line of `canonical/*.jsonl`:
  messages  [{role: system|user|assistant|tool, content: str, reasoning_content?: str,
              tool_calls?: [{id?, type: "function", function: {name, arguments: {...}}}], tool_call_id?, name?}]
  tools     [{type: "function", function: {name, description?, parameters?}}]  (always present, maybe empty)
  chosen, rejected  one assistant message each (preference)
  the reference fields (rl): every other column of the input, unchanged; sft and preference rows do not carry
  other columns, and the summary lists them

Conversion keeps every text exactly: reasoning written inline as `<think>...</think>` at the start of an
assistant message moves to `reasoning_content`, tool-call arguments given as JSON text become the JSON object
they spell, and bare tool schemas get the `{"type": "function", "function": ...}` wrapper GLM-4.5 is served with.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from finetune.errors import suggest
from finetune.prepare.problems import RowProblem, at

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
LF_RESULT_SEPARATOR = "\n</tool_response>\n<tool_response>\n"
"""How LLaMA-Factory joins the results of parallel tool calls into one observation."""

LAYOUTS = ("openai", "sharegpt", "alpaca", "prompt")
KINDS = ("sft", "preference", "rl")
CANONICAL_ROLES = ("system", "user", "assistant", "tool")
DEFAULT_ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "tool": "tool",
    "observation": "tool",
    "tool_response": "tool",
    "function": "tool",
    "ipython": "tool",
    "function_call": "function_call",
    "tool_call": "tool_call",
}
"""Role tags understood without `--role`: OpenAI, ShareGPT, LLaMA-Factory and SWIFT names."""

MESSAGE_COLUMNS = ("messages", "conversations", "conversation")
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
MESSAGE_KEYS = {"role", "from", "content", "value", "tool_calls", "function_call", "tool_call_id", "name",
                *REASONING_KEYS}  # fmt: skip


@dataclass
class ConvertOptions:
    """What the user said about the layout of their data."""

    layout: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)  # --map SRC=DST
    roles: dict[str, str] = field(default_factory=dict)  # --role TAG=ROLE

    def __post_init__(self) -> None:
        self.role_map = {**DEFAULT_ROLES, **{k.lower(): v for k, v in self.roles.items()}}


@dataclass
class Converted:
    row: dict[str, Any]
    layout: str
    kind: str
    tools_type: str | None  # how the input typed `tools` ("list", "string"), for the cross-row check
    ignored: list[str]  # input columns an sft/preference row does not carry


class Notes:
    """Things conversion did that the summary should mention (ignored message fields, rewritten values)."""

    def __init__(self) -> None:
        self.ignored_message_fields: Counter[str] = Counter()
        self.tool_results_as_json = 0


# -- small helpers ----------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _text(value: Any, where: str, key: str = "") -> str:
    """Message content as one string: plain text, or OpenAI content parts that are all text.

    The field path (`where` + `key`) is only joined when there is a problem to report: this runs for every
    message of every row.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    where = at(where, key) if key else where
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else _type_name(part)
                raise RowProblem(
                    at(where, f"[{i}]"),
                    f"only text content can be trained here, found a `{kind}` part",
                    "Remove image/audio parts, or keep multimodal data out of this dataset.",
                )
        return "".join(parts)
    raise RowProblem(where, f"content must be text, got {_type_name(value)}", "Write the content as a string.")


def strip_arrow_padding(value: Any) -> Any:
    """Drop the null fields Arrow adds when it unifies differently shaped objects into one struct type."""
    if isinstance(value, dict):
        return {k: strip_arrow_padding(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_arrow_padding(v) for v in value]
    return value


def split_think(content: str, where: str, key: str = "") -> tuple[str, str | None]:
    """(answer, reasoning) for content that opens with an inline `<think>...</think>` block."""
    if THINK_OPEN not in content and THINK_CLOSE not in content:
        return content, None
    where = at(where, key) if key else where
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        if THINK_OPEN not in content:
            raise RowProblem(
                where, "`</think>` without an opening `<think>` (unbalanced think tags)",
                "Start the reasoning with `<think>`, or move it into `reasoning_content`.",
            )  # fmt: skip
        raise RowProblem(
            where, "the `<think>` block does not open the message; GLM-4.5 reads reasoning only at the start",
            "Move the reasoning to the start of the message, or into `reasoning_content`.",
        )  # fmt: skip
    end = stripped.find(THINK_CLOSE)
    if end < 0:
        raise RowProblem(
            where, "`<think>` is never closed (unbalanced think tags)", "Close the reasoning with `</think>`."
        )
    reasoning = stripped[len(THINK_OPEN) : end]
    rest = stripped[end + len(THINK_CLOSE) :]
    if THINK_OPEN in reasoning:
        raise RowProblem(where, "a `<think>` block inside another (unbalanced think tags)", "Remove the inner tag.")
    if THINK_OPEN in rest or THINK_CLOSE in rest:
        raise RowProblem(
            where, "more than one think block (or a stray think tag after the first block)",
            "Keep one reasoning block, at the start of the message.",
        )  # fmt: skip
    return rest, reasoning


def _arguments(value: Any, where: str, arrow: bool) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return strip_arrow_padding(value) if arrow else value
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise RowProblem(
                where, f"the arguments are not valid JSON ({exc})",
                'Write the arguments as a JSON object, e.g. {"city": "Paris"} (or JSON text of one).',
            ) from None  # fmt: skip
        if not isinstance(parsed, dict):
            raise RowProblem(
                where, f"the arguments must be a JSON object, got {_type_name(parsed)}",
                'Wrap the values in an object keyed by parameter name, e.g. {"city": "Paris"}.',
            )  # fmt: skip
        return parsed
    raise RowProblem(
        where, f"the arguments must be a JSON object, got {_type_name(value)}",
        'Write the arguments as a JSON object keyed by parameter name, e.g. {"city": "Paris"}.',
    )  # fmt: skip


def _tool_call(call: Any, where: str, arrow: bool) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise RowProblem(where, f"a tool call must be an object, got {_type_name(call)}",
                         'Write it as {"type": "function", "function": {"name": ..., "arguments": {...}}}.')  # fmt: skip
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    fn_where = at(where, "function") if fn is not call else where
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RowProblem(at(fn_where, "name"), "the tool call has no function name",
                         "Give the name of the tool being called.")  # fmt: skip
    args_key = "arguments" if "arguments" in fn or "parameters" not in fn else "parameters"
    out: dict[str, Any] = {}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    out["type"] = "function"
    out["function"] = {"name": name, "arguments": _arguments(fn.get(args_key), at(fn_where, args_key), arrow)}
    return out


def _calls_from_json(value: Any, where: str, arrow: bool) -> list[dict[str, Any]]:
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise RowProblem(where, "an empty list of tool calls", "Remove the message, or give the calls.")
    return [
        _tool_call(c, at(where, f"[{i}]") if isinstance(value, list) else where, arrow) for i, c in enumerate(calls)
    ]


def _parse_call_text(content: Any, where: str, arrow: bool) -> tuple[str, str | None, list[dict[str, Any]]]:
    """A LLaMA-Factory `function_call` / SWIFT `tool_call` message: (text, reasoning, calls).

    The content is JSON (one call or a list), optionally after an inline think block and text, in which case
    the JSON sits in <tool_call>...</tool_call> (LLaMA-Factory's tool_call_words).
    """
    if isinstance(content, (dict, list)):
        return "", None, _calls_from_json(content, where, arrow)
    text = _text(content, where)
    reasoning = None
    if text.lstrip().startswith(THINK_OPEN):
        close = text.find(THINK_CLOSE)
        if close >= 0:
            head, text = text[: close + len(THINK_CLOSE)], text[close + len(THINK_CLOSE) :]
            _, reasoning = split_think(head, where)
    prefix, body = "", text
    tail = text.rstrip()
    start = text.find(CALL_OPEN)
    if start >= 0 and tail.endswith(CALL_CLOSE):
        prefix, body = text[:start], tail[start + len(CALL_OPEN) : -len(CALL_CLOSE)]
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise RowProblem(
            where, f"a tool-call message must hold the call as JSON ({exc})",
            'Write it as [{"name": "tool", "arguments": {...}}] (text before the calls goes in '
            "<tool_call>...</tool_call> after it).",
        ) from None  # fmt: skip
    if THINK_OPEN in prefix or THINK_CLOSE in prefix:
        raise RowProblem(where, "a think block after text (unbalanced think tags)", "Put the reasoning first.")
    return prefix, reasoning, _calls_from_json(value, where, arrow)


# -- messages ---------------------------------------------------------------------------------------------------


class _Messages:
    """Converts one list of messages (any of the known role vocabularies) to canonical messages."""

    def __init__(self, options: ConvertOptions, notes: Notes, arrow: bool) -> None:
        self.options = options
        self.notes = notes
        self.arrow = arrow

    def role(self, msg: dict[str, Any], where: str) -> str:
        key = "role" if "role" in msg else "from" if "from" in msg else None
        if key is None:
            raise RowProblem(where, "the message has no `role` (or ShareGPT `from`)",
                             "Give every message a role: system, user, assistant or tool.")  # fmt: skip
        tag = msg[key]
        if not isinstance(tag, str):
            raise RowProblem(at(where, key), f"the role must be a string, got {_type_name(tag)}", "Fix the role.")
        role = self.options.role_map.get(tag) or self.options.role_map.get(tag.lower())
        if role is None:
            known = sorted(set(self.options.role_map) | set(CANONICAL_ROLES))
            raise RowProblem(
                at(where, key), f"unknown role `{tag}`.{suggest(tag, known)}",
                f"Use system/user/assistant/tool, or map the tag: `--role {tag}=user` (or assistant, system, tool).",
            )  # fmt: skip
        return role

    def convert(self, raw: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise RowProblem(where, f"the conversation must be a list of messages, got {_type_name(raw)}",
                             "Write it as [{\"role\": \"user\", \"content\": ...}, ...].")  # fmt: skip
        if not raw:
            raise RowProblem(where, "the conversation is empty", "Give at least a user and an assistant message.")
        out: list[dict[str, Any]] = []
        columns = self.options.columns
        for i, msg in enumerate(raw):
            w = f"{where}[{i}]"
            if not isinstance(msg, dict):
                raise RowProblem(w, f"a message must be an object, got {_type_name(msg)}",
                                 'Write it as {"role": ..., "content": ...}.')  # fmt: skip
            if columns:
                msg = {columns.get(k, k): v for k, v in msg.items()}
            if self.arrow:
                msg = {k: v for k, v in msg.items() if v is not None}
            self.append(out, msg, w)
        return out

    def append(self, out: list[dict[str, Any]], msg: dict[str, Any], where: str) -> None:
        role = self.role(msg, where)
        content_key = "content" if "content" in msg else "value"
        content = msg.get(content_key)
        for key in msg:
            if key not in MESSAGE_KEYS:
                self.notes.ignored_message_fields[key] += 1
        if role == "assistant":
            out.append(self.assistant(msg, content, where, content_key))
        elif role in ("function_call", "tool_call"):
            text, reasoning, calls = _parse_call_text(content, at(where, content_key), self.arrow)
            prev = out[-1] if out else None
            if prev is not None and prev["role"] == "assistant" and not text and reasoning is None:
                prev.setdefault("tool_calls", []).extend(calls)  # SWIFT: text, then one message per call
            else:
                new: dict[str, Any] = {"role": "assistant", "content": text}
                if reasoning is not None:
                    new["reasoning_content"] = reasoning
                new["tool_calls"] = calls
                out.append(new)
        elif role == "tool":
            self.tool_results(out, msg, content, where, content_key)
        else:
            out.append({"role": role, "content": _text(content, where, content_key)})

    def assistant(self, msg: dict[str, Any], content: Any, where: str, content_key: str) -> dict[str, Any]:
        reasoning = None
        for key in REASONING_KEYS:
            if msg.get(key) is not None:
                if reasoning is not None:
                    raise RowProblem(at(where, key), "reasoning is given twice (two reasoning fields)",
                                     "Keep one: `reasoning_content`.")  # fmt: skip
                reasoning = _text(msg[key], where, key)
        text, inline = split_think(_text(content, where, content_key), where, content_key)
        if inline is not None:
            if reasoning is not None:
                raise RowProblem(
                    at(where, content_key), "reasoning is given twice: in `reasoning_content` and as a `<think>` block",
                    "Keep one of them.",
                )  # fmt: skip
            reasoning = inline
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning is not None:
            out["reasoning_content"] = reasoning
        calls = msg.get("tool_calls")
        legacy = msg.get("function_call")
        if calls is not None:
            if not isinstance(calls, list):
                raise RowProblem(at(where, "tool_calls"), f"tool_calls must be a list, got {_type_name(calls)}",
                                 "Write the calls as a list, even a single one.")  # fmt: skip
            if calls:
                out["tool_calls"] = [_tool_call(c, f"{where}.tool_calls[{j}]", self.arrow) for j, c in enumerate(calls)]
        if legacy is not None:  # OpenAI's older single `function_call` field
            out.setdefault("tool_calls", []).append(_tool_call(legacy, at(where, "function_call"), self.arrow))
        return out

    def tool_results(self, out: list[dict[str, Any]], msg: dict[str, Any], content: Any, where: str, key: str) -> None:
        if isinstance(content, (dict, list)) and not (
            isinstance(content, list) and all(isinstance(p, (dict, str)) and _is_text_part(p) for p in content)
        ):
            self.notes.tool_results_as_json += 1
            text = json.dumps(content, ensure_ascii=False)
        else:
            text = _text(content, where, key)
        extra = {k: msg[k] for k in ("tool_call_id", "name") if isinstance(msg.get(k), str)}
        pending = _pending_calls(out)
        parts = text.split(LF_RESULT_SEPARATOR) if LF_RESULT_SEPARATOR in text else None
        if parts is not None and pending == len(parts) and not extra:
            out.extend({"role": "tool", "content": p} for p in parts)  # LLaMA-Factory's joined observation
            return
        out.append({"role": "tool", "content": text, **extra})


def _is_text_part(part: Any) -> bool:
    return isinstance(part, str) or (part.get("type", "text") == "text" and isinstance(part.get("text"), str))


def _pending_calls(messages: list[dict[str, Any]]) -> int:
    """Tool calls of the last assistant message that no tool result has answered yet."""
    answered = 0
    for msg in reversed(messages):
        if msg["role"] == "tool":
            answered += 1
        elif msg["role"] == "assistant":
            return len(msg.get("tool_calls", ())) - answered
        else:
            return 0
    return 0


# -- tools ------------------------------------------------------------------------------------------------------


def convert_tools(value: Any, arrow: bool) -> tuple[list[dict[str, Any]], str | None]:
    """(canonical tool list, how the input typed it)."""
    if value is None:
        return [], None
    typed = "list"
    if isinstance(value, str):
        typed = "string"
        if not value.strip():
            return [], typed
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RowProblem("tools", f"tools is text but not valid JSON ({exc})",
                             "Write tools as a JSON list of tool schemas (or JSON text of one).") from None  # fmt: skip
    if isinstance(value, dict):
        raise RowProblem("tools", "tools must be a list of tool schemas, got one object",
                         "Wrap it in a list: [{...}].")  # fmt: skip
    if not isinstance(value, list):
        raise RowProblem("tools", f"tools must be a list of tool schemas, got {_type_name(value)}",
                         "Write tools as a JSON list of tool schemas.")  # fmt: skip
    tools = []
    for i, tool in enumerate(value):
        if arrow:
            tool = strip_arrow_padding(tool)
        if not isinstance(tool, dict):
            raise RowProblem(f"tools[{i}]", f"a tool schema must be an object, got {_type_name(tool)}",
                             'Write it as {"type": "function", "function": {"name": ..., "parameters": {...}}}.')  # fmt: skip
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else None
        if fn is None:
            if not isinstance(tool.get("name"), str):
                raise RowProblem(f"tools[{i}]", "the tool schema has no function name",
                                 'Write it as {"type": "function", "function": {"name": ..., "parameters": {...}}}.')  # fmt: skip
            tool = {"type": "function", "function": tool}
        elif not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RowProblem(f"tools[{i}].function.name", "the tool has no name", "Name the tool.")
        tools.append(tool)
    return tools, typed


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


# -- rows -------------------------------------------------------------------------------------------------------


def detect_layout(row: dict[str, Any]) -> str | None:
    for key in MESSAGE_COLUMNS:
        value = row.get(key)
        if isinstance(value, list):
            first = next((m for m in value if isinstance(m, dict)), None)
            return "sharegpt" if first is not None and ("from" in first or "value" in first) else "openai"
    if "instruction" in row:
        return "alpaca"
    if any(k in row for k in ("prompt", "query")) or ("chosen" in row and "rejected" in row):
        return "prompt"
    return None


def _unknown_layout(row: dict[str, Any]) -> RowProblem:
    for key in MESSAGE_COLUMNS:
        if key in row:
            return RowProblem(key, f"the conversation must be a list of messages, got {_type_name(row[key])}",
                              'Write it as [{"role": "user", "content": ...}, ...].')  # fmt: skip
    keys = ", ".join(f"`{k}`" for k in list(row)[:12]) or "none"
    return RowProblem(
        "<row>",
        f"unknown format: the row's columns ({keys}) match none of the known layouts: messages/conversations "
        "(OpenAI, ShareGPT), instruction/output (Alpaca), prompt/completion or prompt/chosen/rejected",
        "Rename your columns with `--map YOURS=messages` (or instruction, output, prompt, chosen, rejected, ...), "
        "or name the layout with `--format`.",
    )


class RowConverter:
    """Converts input rows to canonical rows; one instance per `prepare` run (it keeps the notes)."""

    def __init__(self, options: ConvertOptions) -> None:
        self.options = options
        self.notes = Notes()

    def convert(self, data: Any, kind: str, *, arrow: bool = False) -> Converted:
        """The canonical row for `data`; `kind` is sft/preference/rl, or auto to detect it from this row."""
        if not isinstance(data, dict):
            raise RowProblem("<row>", f"a row must be a JSON object, got {_type_name(data)}",
                             "Write each row as one JSON object ({...}).")  # fmt: skip
        columns = self.options.columns
        if columns:
            for src, dst in columns.items():
                if src in data and dst in data and src != dst:
                    raise RowProblem(src, f"`--map {src}={dst}` but the row already has a `{dst}` column",
                                     "Map to a name the row does not use, or drop one of the columns.")  # fmt: skip
            data = {columns.get(k, k): v for k, v in data.items()}
        if arrow:
            data = {k: v for k, v in data.items() if v is not None}
        layout = self.options.layout
        if layout == "auto":
            layout = detect_layout(data)
            if layout is None:
                raise _unknown_layout(data)
        elif detect_layout(data) not in (layout, None) and not (
            layout in ("openai", "sharegpt") and detect_layout(data) in ("openai", "sharegpt")
        ):
            raise RowProblem("<row>", f"this row is not in the `{layout}` layout you named (it looks like "
                             f"`{detect_layout(data)}`)", "Drop `--format` to detect the layout per row.")  # fmt: skip
        msgs = _Messages(self.options, self.notes, arrow)
        if kind in ("sft", "rl") and (("chosen" in data and "rejected" in data) or "rejected_response" in data):
            raise RowProblem(
                "<row>", f"this row is a preference pair (chosen/rejected) but the dataset is `{kind}` (named with "
                "--kind, or detected from its first row)",
                "Prepare preference pairs as a dataset of their own, or name the kind with `--kind`.",
            )  # fmt: skip
        if kind == "auto":
            kind = self._detect_kind(data, layout, msgs)
        tools, tools_type = convert_tools(data.get("tools"), arrow)
        if kind == "preference":
            row, used = self._preference(data, layout, msgs)
        else:
            messages, used = self._conversation(data, layout, msgs, kind)
            row = {"messages": messages}
        used |= {"tools"}
        row = {"messages": row.pop("messages"), "tools": tools, **row}
        extras = [k for k in data if k not in used]
        if kind == "rl":
            for k in extras:
                row[k] = data[k]
            extras = []
        return Converted(row, layout, kind, tools_type, extras)

    # -- kinds --

    def _detect_kind(self, data: dict[str, Any], layout: str, msgs: _Messages) -> str:
        if ("chosen" in data and "rejected" in data) or "rejected_response" in data:
            return "preference"
        messages, used = self._conversation(data, layout, msgs, "rl")
        extras = [k for k in data if k not in used and k != "tools"]
        if extras and (not messages or messages[-1]["role"] != "assistant"):
            return "rl"
        return "sft"

    def _conversation(self, data: dict[str, Any], layout: str, msgs: _Messages, kind: str):
        """(messages, columns used) for the sft and rl kinds."""
        if layout in ("openai", "sharegpt"):
            key = next(k for k in MESSAGE_COLUMNS if k in data)
            messages = msgs.convert(data[key], key)
            return self._with_system(data, messages), {key, "system"}
        if layout == "alpaca":
            return self._alpaca(data, msgs, kind)
        return self._prompt_layout(data, msgs, kind)

    def _with_system(self, data: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        system = data.get("system")
        if system is None or system == "":
            return messages
        text = _text(system, "system")
        if messages and messages[0]["role"] == "system":
            raise RowProblem("system", "a system prompt is given twice: in `system` and as the first message",
                             "Keep one of them.")  # fmt: skip
        return [{"role": "system", "content": text}, *messages]

    def _alpaca(self, data: dict[str, Any], msgs: _Messages, kind: str):
        messages: list[dict[str, Any]] = []
        history = data.get("history") or []
        if not isinstance(history, list):
            raise RowProblem("history", f"history must be a list of [query, response] pairs, got {_type_name(history)}",
                             'Write it as [["earlier question", "earlier answer"], ...].')  # fmt: skip
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise RowProblem(f"history[{i}]", "each history entry must be a [query, response] pair",
                                 'Write it as ["earlier question", "earlier answer"].')  # fmt: skip
            messages.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]")})
            messages.append(msgs.assistant({}, pair[1], f"history[{i}]", "[1]"))
        parts = [_text(data.get(k), k) for k in ("instruction", "input")]
        messages.append({"role": "user", "content": "\n".join(p for p in parts if p)})
        used = {"instruction", "input", "output", "system", "history"}
        output = data.get("output")
        if kind != "preference" and output is not None and not (kind == "rl" and output == ""):
            messages.append(msgs.assistant({}, output, "output", "output"))
        return self._with_system(data, messages), used

    def _prompt_layout(self, data: dict[str, Any], msgs: _Messages, kind: str):
        key = "prompt" if "prompt" in data else "query" if "query" in data else None
        used = {"prompt", "query", "completion", "response", "system", "history"}
        if key is None:
            messages: list[dict[str, Any]] = []
        elif isinstance(data[key], list):
            messages = msgs.convert(data[key], key)
        else:
            messages = [{"role": "user", "content": _text(data[key], key)}]
        if key == "query" and data.get("history"):
            history, _ = self._alpaca({"history": data["history"]}, msgs, "rl")
            messages = history[:-1] + messages  # SWIFT's query/response/history
        answer_key = "completion" if "completion" in data else "response" if "response" in data else None
        if kind != "preference" and answer_key is not None:
            answer = data[answer_key]
            if isinstance(answer, list):
                messages.extend(msgs.convert(answer, answer_key))
            elif isinstance(answer, dict):
                msgs.append(messages, answer, answer_key)
            else:
                messages.append(msgs.assistant({}, answer, answer_key, answer_key))
        return self._with_system(data, messages), used

    def _preference(self, data: dict[str, Any], layout: str, msgs: _Messages):
        """(row with messages = the shared prompt, chosen, rejected; columns used)."""
        used = {"chosen", "rejected", "rejected_response"}
        if "rejected_response" in data:  # SWIFT: messages end with the chosen answer
            messages, conv_used = self._conversation(data, layout, msgs, "sft")
            if not messages or messages[-1]["role"] != "assistant":
                raise RowProblem("messages", "with `rejected_response`, the messages must end with the chosen "
                                 "assistant answer", "End the conversation with the chosen answer.")  # fmt: skip
            chosen = messages.pop()
            rejected = msgs.assistant({}, data["rejected_response"], "rejected_response", "rejected_response")
            return {"messages": messages, "chosen": chosen, "rejected": rejected}, used | conv_used
        for key in ("chosen", "rejected"):
            if key not in data:
                raise RowProblem(key, f"a preference pair needs both `chosen` and `rejected`; `{key}` is missing",
                                 f"Add `{key}`, or prepare the data with `--kind sft`.")  # fmt: skip
        has_prompt = any(k in data for k in (*MESSAGE_COLUMNS, "prompt", "query", "instruction"))
        if has_prompt:
            prompt, conv_used = self._conversation(data, layout, msgs, "preference")
            used |= conv_used
        else:  # TRL: chosen and rejected are whole conversations sharing the prompt
            prompt = None
        answers = {}
        for key in ("chosen", "rejected"):
            value = data[key]
            if isinstance(value, list):
                answers[key] = msgs.convert(value, key)
            elif isinstance(value, dict):
                answers[key] = []
                msgs.append(answers[key], value, key)
            else:
                answers[key] = [msgs.assistant({}, value, key, key)]
        if prompt is None:
            prompt = _shared_prefix(answers["chosen"], answers["rejected"])
        for key in ("chosen", "rejected"):
            answer = answers[key]
            if len(answer) > len(prompt) and answer[: len(prompt)] == prompt and prompt:
                answer = answer[len(prompt) :]  # a whole conversation that repeats the prompt
            if len(answer) != 1 or answer[0]["role"] != "assistant":
                raise RowProblem(
                    key, f"`{key}` must be one assistant answer to the shared prompt (got "
                    f"{len(answer)} message(s) after the prompt); chosen and rejected must share the prompt",
                    "Give the prompt once (messages/prompt) and one assistant message each in chosen and rejected.",
                )  # fmt: skip
            answers[key] = answer[0]
        return {"messages": prompt, "chosen": answers["chosen"], "rejected": answers["rejected"]}, used


def _shared_prefix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == 0:
        raise RowProblem(
            "chosen", "chosen and rejected do not share a prompt (they differ from the first message)",
            "Both conversations must start with the same prompt messages and differ only in the last answer.",
        )  # fmt: skip
    return a[:n]
