"""Recognise how a row is laid out and convert it to the canonical conversation: one module a layout.

Layouts (detected per row from its keys, in the order of `LAYOUTS`, or named with `--format`):
  openai    `messages` of {role, content}: OpenAI chat (tool_calls, reasoning_content, tools), the role names
            LLaMA-Factory (function_call, observation) and SWIFT (tool_call, tool_response) write, and
            LLaMA-Factory's typed-content parts (typed_parts.py)
  sharegpt  `conversations` of {from, value} with tags such as human/gpt/function_call/observation (`--role`
            maps custom tags)
  alpaca    instruction / input / output / system / history
  prompt    prompt / completion (TRL), query / response (SWIFT), prompt / chosen / rejected

Kinds (detected from the first row, or named with `--kind`): `sft` conversations that end with the assistant
turn to learn from; `preference` a prompt with a chosen and a rejected answer (preference.py, in any layout);
`rl` prompts that end with the user turn, carrying reference fields (such as `solution`) that reward functions
read. convert.py turns one row of any layout and kind into the canonical row.

The canonical row, one JSON object per line of `canonical/*.jsonl`:
  messages  [{role: system|user|assistant|tool, content: str, reasoning_content?: str,
              tool_calls?: [{id?, type: "function", function: {name, arguments: {...}}}], tool_call_id?, name?,
              trained?: false (an assistant turn that is context only: loss_weight 0 / loss false)}]
  tools     [{type: "function", function: {name, description?, parameters?}}]  (always present, maybe empty)
  chosen, rejected  one assistant message each (preference)
  the reference fields (rl): every other column of the input, unchanged; sft and preference rows do not carry
  other columns, and the summary lists them

Conversion keeps every text exactly: reasoning written inline as `<think>...</think>` at the start of an
assistant message moves to `reasoning_content` (text.py), tool-call arguments given as JSON text become the JSON
object they spell (calls.py), and bare tool schemas get the `{"type": "function", "function": ...}` wrapper
GLM-4.5 is served with (tools.py).
"""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts import alpaca, openai, prompt, sharegpt
from finetune.prepare.layouts.base import Layout
from finetune.prepare.layouts.messages import MESSAGE_COLUMNS
from finetune.prepare.layouts.text import type_name
from finetune.prepare.problems import RowProblem

LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (openai.LAYOUT, sharegpt.LAYOUT, alpaca.LAYOUT, prompt.LAYOUT)
}
KINDS = ("sft", "preference", "rl")
SAME_MESSAGES = {"openai", "sharegpt"}
"""Layouts whose rows hold the same message lists (a row may mix both vocabularies): naming one accepts the other."""


def detect_layout(row: dict[str, Any]) -> str | None:
    """The first layout in `LAYOUTS` that recognises the row."""
    return next((name for name, layout in LAYOUTS.items() if layout.detect(row)), None)


def choose_layout(data: dict[str, Any], named: str) -> Layout:
    """The layout to read `data` with: detected (`named` is auto), or the one named, if the row can be in it."""
    detected = detect_layout(data)
    if named == "auto":
        if detected is None:
            raise _unknown_layout(data)
        return LAYOUTS[detected]
    if detected not in (named, None) and not (named in SAME_MESSAGES and detected in SAME_MESSAGES):
        raise RowProblem(
            "<row>",
            f"this row is not in the `{named}` layout you named (it looks like `{detected}`)",
            "Drop `--format` to detect the layout per row.",
        )
    return LAYOUTS[named]


def _unknown_layout(row: dict[str, Any]) -> RowProblem:
    for key in MESSAGE_COLUMNS:
        if key in row:
            return RowProblem(
                key,
                f"the conversation must be a list of messages, got {type_name(row[key])}",
                'Write it as [{"role": "user", "content": ...}, ...].',
            )
    keys = ", ".join(f"`{k}`" for k in list(row)[:12]) or "none"
    return RowProblem(
        "<row>",
        f"unknown format: the row's columns ({keys}) match none of the known layouts: messages/conversations "
        "(OpenAI, ShareGPT), instruction/output (Alpaca), prompt/completion or prompt/chosen/rejected",
        "Rename your columns with `--map YOURS=messages` (or instruction, output, prompt, chosen, rejected, ...), "
        "or name the layout with `--format`.",
    )
