"""Text as every layout reads it: message content as one string, inline reasoning split off, Arrow's padding
dropped, and the type names problems are described with."""

from __future__ import annotations

from typing import Any

from finetune.prepare.problems import RowProblem, at

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def as_text(value: Any, where: str, key: str = "") -> str:
    """Message content as one string: plain text, or OpenAI content parts that are all text.

    The field path (`where` + `key`) is only joined when there is a problem to report: this runs for every
    message of every row.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    where = at(where, key) if key else where
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type_name(part)
                raise RowProblem(
                    at(where, f"[{i}]"),
                    f"only text content can be trained here, found a `{kind}` part",
                    "Remove image/audio parts, or keep multimodal data out of this dataset.",
                )
        return "".join(parts)
    raise RowProblem(where, f"content must be text, got {type_name(value)}", "Write the content as a string.")


def strip_arrow_padding(value: Any) -> Any:
    """Drop the null fields Arrow adds when it unifies differently shaped objects into one struct type."""
    if isinstance(value, dict):
        return {k: strip_arrow_padding(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_arrow_padding(v) for v in value]
    return value


def split_think(content: str, where: str, key: str = "") -> tuple[str, str | None]:
    """(answer, reasoning) for content that opens with an inline `<think>...</think>` block."""
    if THINK_OPEN not in content and THINK_CLOSE not in content:
        return content, None
    where = at(where, key) if key else where
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        if THINK_OPEN not in content:
            raise RowProblem(
                where,
                "`</think>` without an opening `<think>` (unbalanced think tags)",
                "Start the reasoning with `<think>`, or move it into `reasoning_content`.",
            )
        raise RowProblem(
            where,
            "the `<think>` block does not open the message; GLM-4.5 reads reasoning only at the start",
            "Move the reasoning to the start of the message, or into `reasoning_content`.",
        )
    end = stripped.find(THINK_CLOSE)
    if end < 0:
        raise RowProblem(
            where, "`<think>` is never closed (unbalanced think tags)", "Close the reasoning with `</think>`."
        )
    reasoning = stripped[len(THINK_OPEN) : end]
    rest = stripped[end + len(THINK_CLOSE) :]
    if THINK_OPEN in reasoning:
        raise RowProblem(where, "a `<think>` block inside another (unbalanced think tags)", "Remove the inner tag.")
    if THINK_OPEN in rest or THINK_CLOSE in rest:
        raise RowProblem(
            where,
            "more than one think block (or a stray think tag after the first block)",
            "Keep one reasoning block, at the start of the message.",
        )
    return rest, reasoning
