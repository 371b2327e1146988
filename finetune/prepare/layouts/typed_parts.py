"""LLaMA-Factory's newer message format: `content` as a list of typed parts, a `loss_weight` per message.

    {"role": "assistant", "loss_weight": 1.0, "content": [
        {"type": "reasoning", "value": "..."}, {"type": "text", "value": "..."},
        {"type": "tool_call", "value": "{\"name\": ..., \"arguments\": {...}}"}]}

A message in this shape is rewritten into the plain one the other layouts give (text, `reasoning_content`,
`tool_calls`), so that one converter reads them all. Parts are joined in order per type, as LLaMA-Factory joins
them when it renders. The results of parallel calls may come as one tool message holding a JSON list; the
message converter splits them (messages.split_listed_results). A `loss_weight` of 0 on an assistant turn
becomes `"trained": false` on the canonical message (context, not learnt); other weights cannot be expressed
by the recipes' frameworks and are refused rather than rounded.
"""

from __future__ import annotations

import json
from typing import Any

from finetune.prepare.problems import RowProblem, at

TEXT, REASONING, CALL_TYPES = "text", "reasoning", ("tool_call", "tool_calls")
MEDIA_TYPES = ("image_url", "video_url", "audio_url")


def is_typed_content(content: Any) -> bool:
    """Parts with `type` and `value` (OpenAI's parts carry `text`, not `value`)."""
    return (
        isinstance(content, list)
        and bool(content)
        and all(isinstance(p, dict) and "type" in p and "value" in p for p in content)
    )


def plain_message(msg: dict[str, Any], role: str, where: str, content_key: str) -> dict[str, Any]:
    """The message as plain text, reasoning and calls (its loss weight kept for `trained`)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[Any] = []
    for i, part in enumerate(msg[content_key]):
        w = at(where, f"{content_key}[{i}]")
        kind, value = part["type"], part["value"]
        if kind in MEDIA_TYPES:
            raise RowProblem(
                at(w, "type"),
                f"only text content can be trained here, found a `{kind}` part",
                "Remove image/audio/video parts, or keep multimodal data out of this dataset.",
            )
        if not isinstance(value, str):
            raise RowProblem(at(w, "value"), "a part's value must be a string", "Write the value as text.")
        if kind == TEXT:
            text.append(value)
        elif kind == REASONING:
            reasoning.append(value)
        elif kind in CALL_TYPES:
            calls.extend(_calls(value, at(w, "value"), role))
        else:
            raise RowProblem(
                at(w, "type"),
                f"unknown part type `{kind}` (known: text, reasoning, tool_call)",
                "Give the row's tools as its `tools` column, and other text as `text` parts.",
            )
    out: dict[str, Any] = {"role": msg.get("role", msg.get("from")), content_key: "".join(text)}
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if calls:
        out["tool_calls"] = calls
    for key in ("tool_call_id", "name", "loss_weight"):
        if key in msg:
            out[key] = msg[key]
    return out


def _calls(value: str, where: str, role: str) -> list[Any]:
    if role != "assistant":
        raise RowProblem(where, f"a tool call in a {role} message", "Only assistant messages call tools.")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise RowProblem(
            where,
            f"a tool_call part must hold the call as JSON ({exc})",
            'Write it as {"name": "tool", "arguments": {...}}.',
        ) from None
    return parsed if isinstance(parsed, list) else [parsed]


def trained(msg: dict[str, Any], role: str, where: str) -> bool:
    """Whether an assistant turn is learnt: LLaMA-Factory's `loss_weight` 1 (0: context only) or SWIFT's
    `loss` true, or neither given; prompts must not ask to be trained."""
    if isinstance(msg.get("loss"), bool) and "loss_weight" not in msg:
        if role != "assistant" and msg["loss"]:
            raise RowProblem(
                at(where, "loss"), f"a {role} message with loss true: only assistant turns are trained", "Drop it."
            )
        return msg["loss"] or role != "assistant"
    weight = msg.get("loss_weight")
    if weight is None:
        return True
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise RowProblem(at(where, "loss_weight"), "loss_weight must be a number", "Use 1.0 (learnt) or 0.0.")
    if role != "assistant":
        if weight != 0:
            raise RowProblem(
                at(where, "loss_weight"),
                f"a {role} message with loss_weight {weight}: only assistant turns are trained",
                "Set it to 0.0 (or drop it).",
            )
        return True
    if weight not in (0, 1):
        raise RowProblem(
            at(where, "loss_weight"),
            f"loss_weight {weight}: the recipes' frameworks train a turn fully or not at all",
            "Use 1.0 to train the turn, 0.0 to keep it as context only.",
        )
    return weight == 1
