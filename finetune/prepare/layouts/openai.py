"""OpenAI chat: `messages` of {role, content}, with tool_calls, reasoning_content and `tools`.

The same column may hold the role names LLaMA-Factory (function_call, observation) and SWIFT (tool_call,
tool_response) write; `conversations` and `conversation` are read like `messages`.
"""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts.base import Conversation, Layout
from finetune.prepare.layouts.messages import MESSAGE_COLUMNS, Messages, with_system


def message_style(row: dict[str, Any]) -> str | None:
    """ "sharegpt" or "openai" by the first message of the row's first conversation column; None without one."""
    for key in MESSAGE_COLUMNS:
        value = row.get(key)
        if isinstance(value, list):
            first = next((m for m in value if isinstance(m, dict)), None)
            return "sharegpt" if first is not None and ("from" in first or "value" in first) else "openai"
    return None


def conversation(data: dict[str, Any], msgs: Messages, kind: str) -> Conversation:
    """The row's conversation column, after its `system` column (the kind changes nothing here)."""
    key = next(k for k in MESSAGE_COLUMNS if k in data)
    return with_system(data, msgs.convert(data[key], key)), {key, "system"}


LAYOUT = Layout("openai", lambda row: message_style(row) == "openai", conversation)
