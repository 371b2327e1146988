"""Statistics of a prepared dataset: what is in it, and how long its conversations are in tokens.

Content statistics are counted while the rows stream through. Token statistics render every canonical
conversation with the tokenizer's own chat template (what the model sees) and count its tokens, so a user sees
how many rows a recipe's sequence length would truncate before a GPU is touched.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetune.prepare.jsonio import loads

TOKEN_BATCH = 256
OVER_LIMIT_EXAMPLES = 5


def percentiles(values: array) -> dict[str, float | int]:
    """min / p50 / p90 / p99 / max / mean of a sequence of lengths (exact: the lengths fit in memory)."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)

    def pick(q: float) -> int:
        return ordered[min(n - 1, int(q * n))]

    return {
        "min": ordered[0],
        "p50": pick(0.5),
        "p90": pick(0.9),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": round(sum(ordered) / n, 1),
    }


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

    def summary(self) -> dict[str, Any]:
        rows = len(self.bytes)
        return {
            "layouts": dict(sorted(self.layouts.items())),
            "messages": self.messages,
            "messages_per_row": round(self.messages / rows, 2) if rows else 0,
            "assistant_turns": self.assistant_turns,
            "rows_with_system": self.rows_with_system,
            "rows_with_tools": self.rows_with_tools,
            "rows_calling_tools": self.rows_calling_tools,
            "tool_calls": self.tool_calls,
            "parallel_call_turns": self.parallel_call_turns,
            "rows_with_reasoning": self.rows_with_reasoning,
            "row_bytes": percentiles(self.bytes),
        }


# -- tokens ---------------------------------------------------------------------------------------------------------


def replica_tokenizer_dir() -> Path:
    """A tokenizer folder with GLM-4.5's special tokens and official chat template, built offline.

    The replica's own folder when it has been built; otherwise just its tokenizer (no model weights needed).
    """
    from finetune.paths import cache_dir
    from finetune.replica.build import replica_path

    replica = replica_path("glm-4.5-air")
    if (replica / "tokenizer.json").is_file():
        return replica
    folder = cache_dir() / "tokenizers" / replica.name
    if not (folder / "tokenizer.json").is_file():
        from finetune.replica.tokenizer import build_tokenizer

        build_tokenizer(folder)
    return folder


def _conversations(row: dict[str, Any], kind: str) -> list[tuple[list[dict[str, Any]], bool]]:
    """(messages, add_generation_prompt) for each text a row turns into during training."""
    if kind == "preference":
        return [(row["messages"] + [row[k]], False) for k in ("chosen", "rejected")]
    return [(row["messages"], kind == "rl")]


def _canonical_rows(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for split in ("train", "val"):
        path = folder / "canonical" / f"{split}.jsonl"
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                yield f"canonical/{split}.jsonl:{n}", loads(line)


def token_stats(folder: Path, kind: str, tokenizer_path: Path, label: str, seq_len: int | None,
                recipe: str | None) -> dict[str, Any]:  # fmt: skip
    """Token lengths of every prepared row, rendered with the tokenizer's chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_path))
    if not tok.chat_template:
        from finetune.errors import FinetuneError

        raise FinetuneError(f"--tokenizer {tokenizer_path}: the tokenizer has no chat template to render with.")
    lengths = array("I")
    over: list[str] = []
    n_over = 0
    batch: list[tuple[str, list[str]]] = []

    def flush() -> None:
        nonlocal n_over
        texts = [t for _, ts in batch for t in ts]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        i = 0
        for location, ts in batch:
            longest = max(len(x) for x in ids[i : i + len(ts)])
            i += len(ts)
            lengths.append(longest)
            if seq_len is not None and longest > seq_len:
                n_over += 1
                if len(over) < OVER_LIMIT_EXAMPLES:
                    over.append(f"{location} ({longest} tokens)")
        batch.clear()

    for location, row in _canonical_rows(folder):
        texts = [
            tok.apply_chat_template(msgs, tools=row["tools"] or None, tokenize=False, add_generation_prompt=gen)
            for msgs, gen in _conversations(row, kind)
        ]
        batch.append((location, texts))
        if len(batch) >= TOKEN_BATCH:
            flush()
    if batch:
        flush()
    out: dict[str, Any] = {"tokenizer": label, "lengths": percentiles(lengths)}
    if seq_len is not None:
        out.update(recipe=recipe, seq_len=seq_len, rows_over_seq_len=n_over, examples_over_seq_len=over)
    return out
