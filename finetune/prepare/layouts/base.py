"""What every layout is given and gives back: the user's options, the notes for the summary, the converted row,
and the entry a layout has in the table (layouts/__init__.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ConvertOptions:
    """What the user said about the layout of their data."""

    layout: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)  # --map SRC=DST
    roles: dict[str, str] = field(default_factory=dict)  # --role TAG=ROLE

    def __post_init__(self) -> None:
        self.role_map = {**DEFAULT_ROLES, **{k.lower(): v for k, v in self.roles.items()}}


class Notes:
    """Things conversion did that the summary should mention (ignored message fields, rewritten values)."""

    def __init__(self) -> None:
        self.ignored_message_fields: Counter[str] = Counter()
        self.tool_results_as_json = 0


@dataclass
class Converted:
    row: dict[str, Any]
    layout: str
    kind: str
    tools_type: str | None  # how the input typed `tools` ("list", "string"), for the cross-row check
    ignored: list[str]  # input columns an sft/preference row does not carry


Conversation = tuple[list[dict[str, Any]], set[str]]
"""A row's canonical messages, and the input columns they were made from."""


@dataclass(frozen=True)
class Layout:
    """One input layout: how a row in it is recognised, and how its conversation is read.

    `conversation(row, messages, kind)` gets the row (columns already renamed), the converter of message lists
    (layouts/messages.py) and the kind (sft, rl, or preference for the prompt of a pair).
    """

    name: str
    detect: Callable[[dict[str, Any]], bool]
    conversation: Callable[..., Conversation]
