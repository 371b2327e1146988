"""Content statistics of a prepared dataset, counted while the rows stream through (token lengths: tokens.py)."""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any

from finetune.prepare.manifest import Percentiles, Statistics


def percentiles(values: array) -> Percentiles | None:
    """min / p50 / p90 / p99 / max / mean of a sequence of lengths (exact: the lengths fit in memory)."""
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)

    def pick(q: float) -> int:
        return ordered[min(n - 1, int(q * n))]

    return Percentiles(ordered[0], pick(0.5), pick(0.9), pick(0.99), ordered[-1], round(sum(ordered) / n, 1))


class ContentStats:
    """Counts over the kept rows: turns, tool use, reasoning, sizes."""

    def __init__(self) -> None:
        self.layouts: Counter[str] = Counter()
        self.messages = 0
        self.assistant_turns = 0
        self.tool_calls = 0
        self.parallel_call_turns = 0
        self.rows_with_tools = 0
        self.rows_calling_tools = 0
        self.rows_with_reasoning = 0
        self.rows_with_system = 0
        self.bytes = array("I")

    def add(self, row: dict[str, Any], layout: str, line: bytes) -> None:
        self.layouts[layout] += 1
        self.bytes.append(len(line))
        messages = row["messages"]
        answers = [m for m in messages if m["role"] == "assistant"]
        for key in ("chosen", "rejected"):
            if key in row:
                answers.append(row[key])
        self.messages += len(messages)
        self.assistant_turns += len(answers)
        calls = reasoning = 0
        for m in answers:
            n = len(m.get("tool_calls") or ())
            calls += n
            self.parallel_call_turns += n > 1
            reasoning += bool(m.get("reasoning_content"))
        self.tool_calls += calls
        self.rows_calling_tools += calls > 0
        self.rows_with_reasoning += reasoning > 0
        self.rows_with_tools += bool(row["tools"])
        self.rows_with_system += bool(messages) and messages[0]["role"] == "system"

    def summary(self) -> Statistics:
        rows = len(self.bytes)
        return Statistics(
            layouts=dict(sorted(self.layouts.items())),
            messages=self.messages,
            messages_per_row=round(self.messages / rows, 2) if rows else 0,
            assistant_turns=self.assistant_turns,
            rows_with_system=self.rows_with_system,
            rows_with_tools=self.rows_with_tools,
            rows_calling_tools=self.rows_calling_tools,
            tool_calls=self.tool_calls,
            parallel_call_turns=self.parallel_call_turns,
            rows_with_reasoning=self.rows_with_reasoning,
            row_bytes=percentiles(self.bytes),
        )
