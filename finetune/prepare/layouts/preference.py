"""Preference pairs in any layout: a prompt with one chosen and one rejected assistant answer.

The prompt comes from the row's own layout (messages, prompt, instruction, ...); the answers from `chosen` and
`rejected` (text, a message, or TRL's whole conversations that repeat the prompt; LLaMA-Factory's newer
`chosen_messages` / `rejected_messages` are the same), or from SWIFT's messages that end with the chosen answer
plus `rejected_response`.
"""

from __future__ import annotations

from typing import Any

from finetune.prepare.layouts.base import Layout
from finetune.prepare.layouts.messages import MESSAGE_COLUMNS, Messages
from finetune.prepare.problems import RowProblem

# LLaMA-Factory's newer pair format: two whole conversations (typed content) that share the prompt, as TRL writes them
WHOLE_CONVERSATIONS = {"chosen_messages": "chosen", "rejected_messages": "rejected"}


def named_as_trl(data: dict[str, Any]) -> dict[str, Any]:
    """A row with `chosen_messages` / `rejected_messages` (and no `chosen` / `rejected`) under TRL's names."""
    if not all(k in data for k in WHOLE_CONVERSATIONS) or any(k in data for k in WHOLE_CONVERSATIONS.values()):
        return data
    return {WHOLE_CONVERSATIONS.get(k, k): v for k, v in data.items()}


def is_pair(data: dict[str, Any]) -> bool:
    return ("chosen" in data and "rejected" in data) or "rejected_response" in data


def pair(data: dict[str, Any], layout: Layout, msgs: Messages) -> tuple[dict[str, Any], set[str]]:
    """(row with messages = the shared prompt, chosen, rejected; columns used)."""
    used = {"chosen", "rejected", "rejected_response"}
    if "rejected_response" in data:  # SWIFT: messages end with the chosen answer
        messages, conv_used = layout.conversation(data, msgs, "sft")
        if not messages or messages[-1]["role"] != "assistant":
            raise RowProblem(
                "messages",
                "with `rejected_response`, the messages must end with the chosen assistant answer",
                "End the conversation with the chosen answer.",
            )
        chosen = messages.pop()
        rejected = msgs.assistant({}, data["rejected_response"], "rejected_response", "rejected_response")
        return {"messages": messages, "chosen": chosen, "rejected": rejected}, used | conv_used
    for key in ("chosen", "rejected"):
        if key not in data:
            raise RowProblem(
                key,
                f"a preference pair needs both `chosen` and `rejected`; `{key}` is missing",
                f"Add `{key}`, or prepare the data with `--kind sft`.",
            )
    has_prompt = any(k in data for k in (*MESSAGE_COLUMNS, "prompt", "query", "instruction"))
    if has_prompt:
        prompt, conv_used = layout.conversation(data, msgs, "preference")
        used |= conv_used
    else:  # TRL: chosen and rejected are whole conversations sharing the prompt
        prompt = None
    answers = {key: _answer(data[key], key, msgs) for key in ("chosen", "rejected")}
    if prompt is None:
        prompt = _shared_prefix(answers["chosen"], answers["rejected"])
    for key in ("chosen", "rejected"):
        answer = answers[key]
        if len(answer) > len(prompt) and answer[: len(prompt)] == prompt and prompt:
            answer = answer[len(prompt) :]  # a whole conversation that repeats the prompt
        if len(answer) != 1 or answer[0]["role"] != "assistant":
            raise RowProblem(
                key,
                f"`{key}` must be one assistant answer to the shared prompt (got {len(answer)} message(s) after "
                "the prompt); chosen and rejected must share the prompt",
                "Give the prompt once (messages/prompt) and one assistant message each in chosen and rejected.",
            )
        answers[key] = answer[0]
    return {"messages": prompt, "chosen": answers["chosen"], "rejected": answers["rejected"]}, used


def _answer(value: Any, key: str, msgs: Messages) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return msgs.convert(value, key)
    if isinstance(value, dict):
        answer: list[dict[str, Any]] = []
        msgs.append(answer, value, key)
        return answer
    return [msgs.assistant({}, value, key, key)]


def _shared_prefix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == 0:
        raise RowProblem(
            "chosen",
            "chosen and rejected do not share a prompt (they differ from the first message)",
            "Both conversations must start with the same prompt messages and differ only in the last answer.",
        )
    return a[:n]
