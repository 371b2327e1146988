"""Alpaca: instruction / input / output / system, and `history` as [query, response] pairs before them."""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts.base import Conversation, Layout
from finetune.prepare.layouts.messages import Messages, with_system
from finetune.prepare.layouts.text import as_text, type_name
from finetune.prepare.problems import RowProblem


def history_messages(history: Any, msgs: Messages) -> list[dict[str, Any]]:
    """The user and assistant turns of a `history` column (Alpaca's, and SWIFT's query/response)."""
    if not isinstance(history, list):
        raise RowProblem(
            "history",
            f"history must be a list of [query, response] pairs, got {type_name(history)}",
            'Write it as [["earlier question", "earlier answer"], ...].',
        )
    messages: list[dict[str, Any]] = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RowProblem(
                f"history[{i}]",
                "each history entry must be a [query, response] pair",
                'Write it as ["earlier question", "earlier answer"].',
            )
        messages.append({"role": "user", "content": as_text(pair[0], f"history[{i}][0]")})
        messages.append(msgs.assistant({}, pair[1], f"history[{i}]", "[1]"))
    return messages


def conversation(data: dict[str, Any], msgs: Messages, kind: str) -> Conversation:
    """History, then instruction and input as one user turn, then the output (not for an RL prompt's "")."""
    messages = history_messages(data.get("history") or [], msgs)
    parts = [as_text(data.get(k), k) for k in ("instruction", "input")]
    messages.append({"role": "user", "content": "\n".join(p for p in parts if p)})
    used = {"instruction", "input", "output", "system", "history"}
    output = data.get("output")
    if kind != "preference" and output is not None and not (kind == "rl" and output == ""):
        messages.append(msgs.assistant({}, output, "output", "output"))
    return with_system(data, messages), used


LAYOUT = Layout("alpaca", lambda row: "instruction" in row, conversation)
