"""One list of messages, in any of the role vocabularies users bring, as canonical messages.

A row may mix vocabularies (OpenAI `role`/`content`, ShareGPT `from`/`value`, LLaMA-Factory's `function_call` /
`observation` and SWIFT's `tool_call` / `tool_response` turns), so every layout reads its message lists here.
"""

from __future__ import annotations

import json
from typing import Any

from finetune.errors import suggest
from finetune.glm.format import RESULT_SEPARATOR
from finetune.prepare.layouts.base import ConvertOptions, Notes
from finetune.prepare.layouts.calls import parse_call_text, tool_call
from finetune.prepare.layouts.text import as_text, split_think, type_name
from finetune.prepare.layouts.typed_parts import is_typed_content, plain_message, trained
from finetune.prepare.problems import RowProblem, at

LF_RESULT_SEPARATOR = RESULT_SEPARATOR
"""How LLaMA-Factory joins the results of parallel tool calls into one observation."""

CANONICAL_ROLES = ("system", "user", "assistant", "tool")
MESSAGE_COLUMNS = ("messages", "conversations", "conversation")
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
MESSAGE_KEYS = {
    "role",
    "from",
    "content",
    "value",
    "tool_calls",
    "function_call",
    "tool_call_id",
    "name",
    "loss_weight",
    "loss",
    *REASONING_KEYS,
}


class Messages:
    """Converts one list of messages (any of the known role vocabularies) to canonical messages."""

    def __init__(self, options: ConvertOptions, notes: Notes, arrow: bool) -> None:
        self.options = options
        self.notes = notes
        self.arrow = arrow

    def role(self, msg: dict[str, Any], where: str) -> str:
        key = "role" if "role" in msg else "from" if "from" in msg else None
        if key is None:
            raise RowProblem(
                where,
                "the message has no `role` (or ShareGPT `from`)",
                "Give every message a role: system, user, assistant or tool.",
            )
        tag = msg[key]
        if not isinstance(tag, str):
            raise RowProblem(at(where, key), f"the role must be a string, got {type_name(tag)}", "Fix the role.")
        role = self.options.role_map.get(tag) or self.options.role_map.get(tag.lower())
        if role is None:
            known = sorted(set(self.options.role_map) | set(CANONICAL_ROLES))
            raise RowProblem(
                at(where, key),
                f"unknown role `{tag}`.{suggest(tag, known)}",
                f"Use system/user/assistant/tool, or map the tag: `--role {tag}=user` (or assistant, system, tool).",
            )
        return role

    def convert(self, raw: Any, where: str) -> list[dict[str, Any]]:
        if not isinstance(raw, list):
            raise RowProblem(
                where,
                f"the conversation must be a list of messages, got {type_name(raw)}",
                'Write it as [{"role": "user", "content": ...}, ...].',
            )
        if not raw:
            raise RowProblem(where, "the conversation is empty", "Give at least a user and an assistant message.")
        out: list[dict[str, Any]] = []
        columns = self.options.columns
        for i, msg in enumerate(raw):
            w = f"{where}[{i}]"
            if not isinstance(msg, dict):
                raise RowProblem(
                    w,
                    f"a message must be an object, got {type_name(msg)}",
                    'Write it as {"role": ..., "content": ...}.',
                )
            if columns:
                msg = {columns.get(k, k): v for k, v in msg.items()}
            if self.arrow:
                msg = {k: v for k, v in msg.items() if v is not None}
            self.append(out, msg, w)
        return split_listed_results(out)

    def append(self, out: list[dict[str, Any]], msg: dict[str, Any], where: str) -> None:
        role = self.role(msg, where)
        content_key = "content" if "content" in msg else "value"
        content = msg.get(content_key)
        for key in msg:
            if key not in MESSAGE_KEYS:
                self.notes.ignored_message_fields[key] += 1
        if is_typed_content(content):  # LLaMA-Factory's newer format
            msg = plain_message(msg, role, where, content_key)
            content = msg[content_key]
        learnt = True if role in ("function_call", "tool_call") else trained(msg, role, where)
        if role == "assistant":
            out.append(self.assistant(msg, content, where, content_key))
            if not learnt:
                out[-1]["trained"] = False
        elif role in ("function_call", "tool_call"):
            text, reasoning, calls = parse_call_text(content, at(where, content_key), self.arrow)
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
            out.append({"role": role, "content": as_text(content, where, content_key)})

    def assistant(self, msg: dict[str, Any], content: Any, where: str, content_key: str) -> dict[str, Any]:
        reasoning = None
        for key in REASONING_KEYS:
            if msg.get(key) is not None:
                if reasoning is not None:
                    raise RowProblem(
                        at(where, key),
                        "reasoning is given twice (two reasoning fields)",
                        "Keep one: `reasoning_content`.",
                    )
                reasoning = as_text(msg[key], where, key)
        text, inline = split_think(as_text(content, where, content_key), where, content_key)
        if inline is not None:
            if reasoning is not None:
                raise RowProblem(
                    at(where, content_key),
                    "reasoning is given twice: in `reasoning_content` and as a `<think>` block",
                    "Keep one of them.",
                )
            reasoning = inline
        out: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning is not None:
            out["reasoning_content"] = reasoning
        calls = msg.get("tool_calls")
        legacy = msg.get("function_call")
        if calls is not None:
            if not isinstance(calls, list):
                raise RowProblem(
                    at(where, "tool_calls"),
                    f"tool_calls must be a list, got {type_name(calls)}",
                    "Write the calls as a list, even a single one.",
                )
            if calls:
                out["tool_calls"] = [tool_call(c, f"{where}.tool_calls[{j}]", self.arrow) for j, c in enumerate(calls)]
        if legacy is not None:  # OpenAI's older single `function_call` field
            out.setdefault("tool_calls", []).append(tool_call(legacy, at(where, "function_call"), self.arrow))
        return out

    def tool_results(self, out: list[dict[str, Any]], msg: dict[str, Any], content: Any, where: str, key: str) -> None:
        if isinstance(content, (dict, list)) and not (
            isinstance(content, list) and all(isinstance(p, (dict, str)) and _is_text_part(p) for p in content)
        ):
            self.notes.tool_results_as_json += 1
            text = json.dumps(content, ensure_ascii=False)
        else:
            text = as_text(content, where, key)
        extra = {k: msg[k] for k in ("tool_call_id", "name") if isinstance(msg.get(k), str)}
        pending = _pending_calls(out)
        parts = text.split(LF_RESULT_SEPARATOR) if LF_RESULT_SEPARATOR in text else None
        if parts is not None and pending == len(parts) and not extra:
            out.extend({"role": "tool", "content": p} for p in parts)  # LLaMA-Factory's joined observation
            return
        out.append({"role": "tool", "content": text, **extra})


def split_listed_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of N parallel calls given as one tool message holding a JSON list of N items (LLaMA-Factory's
    newer format writes them so) as N tool messages, in call order, as GLM-4.5 renders them: one
    `<tool_response>` each. Only a lone tool message after an assistant turn with N > 1 calls is split."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        calls = len(out[-1].get("tool_calls", ())) if out and out[-1]["role"] == "assistant" else 0
        lone = msg["role"] == "tool" and (i + 1 == len(messages) or messages[i + 1]["role"] != "tool")
        items = _json_list(msg["content"]) if calls > 1 and lone and "tool_call_id" not in msg else None
        if items is not None and len(items) == calls:
            out.extend({"role": "tool", "content": _result_text(item)} for item in items)
        else:
            out.append(msg)
    return out


def _json_list(text: str) -> list[Any] | None:
    if not text.lstrip().startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _result_text(item: Any) -> str:
    return item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)


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


def with_system(data: dict[str, Any], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the row's `system` column, when it has one (every layout may carry it)."""
    system = data.get("system")
    if system is None or system == "":
        return messages
    text = as_text(system, "system")
    if messages and messages[0]["role"] == "system":
        raise RowProblem(
            "system", "a system prompt is given twice: in `system` and as the first message", "Keep one of them."
        )
    return [{"role": "system", "content": text}, *messages]
