"""One input row, in any layout and of any kind, as the canonical row (see layouts/__init__.py for its shape).

Per row: rename columns (`--map`), drop Arrow's null padding, choose the layout, fix or check the kind, read the
tools and the conversation (or the preference pair), and carry the reference fields of RL prompts.
"""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts import choose_layout
from finetune.prepare.layouts.base import Converted, ConvertOptions, Layout, Notes
from finetune.prepare.layouts.messages import Messages
from finetune.prepare.layouts.preference import is_pair, named_as_trl, pair
from finetune.prepare.layouts.text import type_name
from finetune.prepare.layouts.tools import convert_tools
from finetune.prepare.problems import RowProblem


class RowConverter:
    """Converts input rows to canonical rows; one instance per `prepare` run (it keeps the notes)."""

    def __init__(self, options: ConvertOptions) -> None:
        self.options = options
        self.notes = Notes()

    def convert(self, data: Any, kind: str, *, arrow: bool = False) -> Converted:
        """The canonical row for `data`; `kind` is sft/preference/rl, or auto to detect it from this row."""
        if not isinstance(data, dict):
            raise RowProblem(
                "<row>",
                f"a row must be a JSON object, got {type_name(data)}",
                "Write each row as one JSON object ({...}).",
            )
        data = named_as_trl(self._renamed(data))
        if arrow:
            data = {k: v for k, v in data.items() if v is not None}
        layout = choose_layout(data, self.options.layout)
        msgs = Messages(self.options, self.notes, arrow)
        if kind in ("sft", "rl") and is_pair(data):
            raise RowProblem(
                "<row>",
                f"this row is a preference pair (chosen/rejected) but the dataset is `{kind}` (named with "
                "--kind, or detected from its first row)",
                "Prepare preference pairs as a dataset of their own, or name the kind with `--kind`.",
            )
        if kind == "auto":
            kind = _detect_kind(data, layout, msgs)
        tools, tools_type = convert_tools(data.get("tools"), arrow)
        if kind == "preference":
            row, used = pair(data, layout, msgs)
        else:
            messages, used = layout.conversation(data, msgs, kind)
            row = {"messages": messages}
        used |= {"tools"}
        row = {"messages": row.pop("messages"), "tools": tools, **row}
        extras = [k for k in data if k not in used]
        if kind == "rl":  # the reference fields reward functions read
            for k in extras:
                row[k] = data[k]
            extras = []
        return Converted(row, layout.name, kind, tools_type, extras)

    def _renamed(self, data: dict[str, Any]) -> dict[str, Any]:
        columns = self.options.columns
        if not columns:
            return data
        for src, dst in columns.items():
            if src in data and dst in data and src != dst:
                raise RowProblem(
                    src,
                    f"`--map {src}={dst}` but the row already has a `{dst}` column",
                    "Map to a name the row does not use, or drop one of the columns.",
                )
        return {columns.get(k, k): v for k, v in data.items()}


def _detect_kind(data: dict[str, Any], layout: Layout, msgs: Messages) -> str:
    """preference for a pair; rl for a prompt (no final assistant turn) with reference fields; else sft."""
    if is_pair(data):
        return "preference"
    messages, used = layout.conversation(data, msgs, "rl")
    extras = [k for k in data if k not in used and k != "tools"]
    if extras and (not messages or messages[-1]["role"] != "assistant"):
        return "rl"
    return "sft"
