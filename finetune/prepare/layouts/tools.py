"""A row's `tools` (tool schemas), in every layout: a list or JSON text of one, wrapped as GLM-4.5 is served."""

from __future__ import annotations

import json
from typing import Any

from finetune.prepare.layouts.text import strip_arrow_padding, type_name
from finetune.prepare.problems import RowProblem

_SCHEMA = 'Write it as {"type": "function", "function": {"name": ..., "parameters": {...}}}.'


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
            raise RowProblem(
                "tools",
                f"tools is text but not valid JSON ({exc})",
                "Write tools as a JSON list of tool schemas (or JSON text of one).",
            ) from None
    if isinstance(value, dict):
        raise RowProblem("tools", "tools must be a list of tool schemas, got one object", "Wrap it in a list: [{...}].")
    if not isinstance(value, list):
        raise RowProblem(
            "tools",
            f"tools must be a list of tool schemas, got {type_name(value)}",
            "Write tools as a JSON list of tool schemas.",
        )
    tools = []
    for i, tool in enumerate(value):
        if arrow:
            tool = strip_arrow_padding(tool)
        if not isinstance(tool, dict):
            raise RowProblem(f"tools[{i}]", f"a tool schema must be an object, got {type_name(tool)}", _SCHEMA)
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else None
        if fn is None:
            if not isinstance(tool.get("name"), str):
                raise RowProblem(f"tools[{i}]", "the tool schema has no function name", _SCHEMA)
            tool = {"type": "function", "function": tool}
        elif not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise RowProblem(f"tools[{i}].function.name", "the tool has no name", "Name the tool.")
        tools.append(tool)
    return tools, typed


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]
