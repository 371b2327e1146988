"""Prompt and answer columns: prompt / completion (TRL), query / response / history (SWIFT), prompt / chosen /
rejected (pairs, see preference.py)."""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts.alpaca import history_messages
from finetune.prepare.layouts.base import Conversation, Layout
from finetune.prepare.layouts.messages import Messages, with_system
from finetune.prepare.layouts.text import as_text


def detect(row: dict[str, Any]) -> bool:
    return any(k in row for k in ("prompt", "query")) or ("chosen" in row and "rejected" in row)


def conversation(data: dict[str, Any], msgs: Messages, kind: str) -> Conversation:
    """The prompt (text or messages), after SWIFT's history, then the answer unless it is a pair's prompt."""
    key = "prompt" if "prompt" in data else "query" if "query" in data else None
    used = {"prompt", "query", "completion", "response", "system", "history"}
    if key is None:
        messages: list[dict[str, Any]] = []
    elif isinstance(data[key], list):
        messages = msgs.convert(data[key], key)
    else:
        messages = [{"role": "user", "content": as_text(data[key], key)}]
    if key == "query" and data.get("history"):
        messages = history_messages(data["history"], msgs) + messages  # SWIFT's query/response/history
    answer_key = "completion" if "completion" in data else "response" if "response" in data else None
    if kind != "preference" and answer_key is not None:
        answer = data[answer_key]
        if isinstance(answer, list):
            messages.extend(msgs.convert(answer, answer_key))
        elif isinstance(answer, dict):
            msgs.append(messages, answer, answer_key)
        else:
            messages.append(msgs.assistant({}, answer, answer_key, answer_key))
    return with_system(data, messages), used


LAYOUT = Layout("prompt", detect, conversation)
