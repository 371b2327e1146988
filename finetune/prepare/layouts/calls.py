"""Tool calls in any of the shapes users bring, as canonical `{id?, type: "function", function: {name, arguments}}`.

OpenAI's `tool_calls` (arguments as JSON text or as an object), its older single `function_call`, and the
call messages LLaMA-Factory (`function_call`) and SWIFT (`tool_call`) write, whose content is the call as JSON,
optionally after reasoning and text.
"""

from __future__ import annotations

import json
from typing import Any

from finetune.prepare.layouts.text import THINK_CLOSE, THINK_OPEN, as_text, split_think, strip_arrow_padding, type_name
from finetune.prepare.problems import RowProblem, at

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


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
                where,
                f"the arguments are not valid JSON ({exc})",
                'Write the arguments as a JSON object, e.g. {"city": "Paris"} (or JSON text of one).',
            ) from None
        if not isinstance(parsed, dict):
            raise RowProblem(
                where,
                f"the arguments must be a JSON object, got {type_name(parsed)}",
                'Wrap the values in an object keyed by parameter name, e.g. {"city": "Paris"}.',
            )
        return parsed
    raise RowProblem(
        where,
        f"the arguments must be a JSON object, got {type_name(value)}",
        'Write the arguments as a JSON object keyed by parameter name, e.g. {"city": "Paris"}.',
    )


def tool_call(call: Any, where: str, arrow: bool) -> dict[str, Any]:
    """One canonical tool call from an OpenAI call object (or a bare `{name, arguments}`)."""
    if not isinstance(call, dict):
        raise RowProblem(
            where,
            f"a tool call must be an object, got {type_name(call)}",
            'Write it as {"type": "function", "function": {"name": ..., "arguments": {...}}}.',
        )
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    fn_where = at(where, "function") if fn is not call else where
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RowProblem(
            at(fn_where, "name"), "the tool call has no function name", "Give the name of the tool being called."
        )
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
    return [tool_call(c, at(where, f"[{i}]") if isinstance(value, list) else where, arrow) for i, c in enumerate(calls)]


def parse_call_text(content: Any, where: str, arrow: bool) -> tuple[str, str | None, list[dict[str, Any]]]:
    """A LLaMA-Factory `function_call` / SWIFT `tool_call` message: (text, reasoning, calls).

    The content is JSON (one call or a list), optionally after an inline think block and text, in which case
    the JSON sits in <tool_call>...</tool_call> (LLaMA-Factory's tool_call_words).
    """
    if isinstance(content, (dict, list)):
        return "", None, _calls_from_json(content, where, arrow)
    text = as_text(content, where)
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
            where,
            f"a tool-call message must hold the call as JSON ({exc})",
            'Write it as [{"name": "tool", "arguments": {...}}] (text before the calls goes in '
            "<tool_call>...</tool_call> after it).",
        ) from None
    if THINK_OPEN in prefix or THINK_CLOSE in prefix:
        raise RowProblem(where, "a think block after text (unbalanced think tags)", "Put the reasoning first.")
    return prefix, reasoning, _calls_from_json(value, where, arrow)
