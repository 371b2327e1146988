"""Rows longer than a recipe's limit, and what its framework does with them, counted before anything trains.

Each framework treats a row over its length limit its own way: ms-swift deletes it by default or cuts one side
off, LLaMA-Factory keeps the turns that fit. A deleted row is data the user prepared and never trained, so it
is counted per split, with the longest rows named, before a launch (which refuses to delete more than a small
share) and by `prepare --recipe`.

A row's length is that of the longest sequence it trains: the conversation, the chosen or the rejected side of a
pair, or the RL prompt with its generation prompt, rendered by the tokenizer's own chat template (the model's
official one, which the format check holds both frameworks to) and ended by the stop token training appends.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from finetune.errors import FinetuneError
from finetune.prepare.jsonio import loads

Action = Literal["delete", "truncate_left", "truncate_right", "truncate_turns", "split", "none"]
SPLITS = ("train", "val")
LONGEST_SHOWN = 5
TOKEN_BATCH = 256
_STOP_TOKEN = 1  # `<|user|>` / `<|observation|>` after the last trained turn: in every training sequence, not in
# the official rendering of the conversation (an RL prompt ends at its generation prompt and has none)


@dataclass(frozen=True)
class LengthPolicy:
    """What a framework does with a row longer than `limit` tokens, and the setting that decides it."""

    framework: str  # display name
    limit: int | None  # None: no limit
    action: Action
    setting: str  # e.g. "max_length: 2048, truncation_strategy: delete": what a user changes to change it
    applies_to: str = "row"  # "row", "pair", "prompt": what one counted unit is

    def consequence(self) -> str:
        """What happens to an over-length row, in a sentence's second half."""
        return {
            "delete": f"{self.framework} deletes them: they are never trained",
            "truncate_left": (
                f"{self.framework} keeps their last {self.limit:,} tokens: the start of the prompt (system prompt, "
                "tools, earliest turns) is cut off"
            ),
            "truncate_right": f"{self.framework} keeps their first {self.limit:,} tokens: the end is cut off",
            "truncate_turns": (
                f"{self.framework} keeps the turns that fit and shortens the turn that crosses the limit (its prompt "
                "and answer in proportion); later turns are not trained"
            ),
            "split": f"{self.framework} splits them into pieces of {self.limit:,} tokens",
            "none": "nothing limits them",
        }[self.action]


@dataclass(frozen=True)
class SplitCount:
    rows: int
    over: int
    answer_over: int = 0  # of those, rows whose trained answer alone is over the limit (truncate_left cuts into it)


@dataclass(frozen=True)
class OverLength:
    """The over-length rows of one dataset under one policy, counted with one tokenizer."""

    policy: LengthPolicy
    tokenizer: str
    splits: dict[str, SplitCount]
    longest: list[tuple[str, int]] = field(default_factory=list)  # (location, tokens), longest first

    @property
    def over(self) -> int:
        return sum(s.over for s in self.splits.values())

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())

    @property
    def deleted(self) -> dict[str, int]:
        """Rows the framework will not train, per split."""
        if self.policy.action != "delete":
            return {k: 0 for k in self.splits}
        return {k: s.over for k, s in self.splits.items()}

    @property
    def deleted_share(self) -> float:
        train = self.splits.get("train")
        return train.over / train.rows if train and train.rows and self.policy.action == "delete" else 0.0

    def lines(self) -> list[str]:
        """The report: per split how many rows are over the limit and what the framework does with them."""
        p = self.policy
        if p.limit is None or p.action == "none":
            return [f"lengths: no length limit in this config ({p.setting}); nothing is cut or deleted"]
        unit = {"pair": "pairs", "prompt": "prompts"}.get(p.applies_to, "rows")
        counts = ", ".join(f"{s.over:,} of {s.rows:,} {split}" for split, s in self.splits.items() if s.rows)
        out = [f"lengths: {counts} {unit} are longer than {p.limit:,} tokens ({p.setting}; {self.tokenizer})"]
        if self.over:
            out.append(f"  {p.consequence()}")
            answers = sum(s.answer_over for s in self.splits.values())
            if answers:
                out.append(f"  in {answers:,} of them the answer alone is longer than the limit and is cut as well")
            out += [f"  {location}: {tokens:,} tokens" for location, tokens in self.longest]
        return out


# -- lengths ---------------------------------------------------------------------------------------------------


def _sequences(row: dict[str, Any], kind: str) -> list[tuple[list[dict[str, Any]], bool]]:
    """(messages, add_generation_prompt) for each sequence a row trains."""
    if kind == "preference":
        return [(row["messages"] + [row[k]], False) for k in ("chosen", "rejected")]
    return [(row["messages"], kind == "rl")]


def canonical_rows(folder: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(split, location, row) of every row of a prepared dataset, train first."""
    for split in SPLITS:
        path = folder / "canonical" / f"{split}.jsonl"
        if path.is_file():
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    yield split, f"canonical/{split}.jsonl:{n}", loads(line)


@dataclass
class RowLengths:
    """Per split, every row's length in tokens and the length of its prompt (what precedes the last answer)."""

    tokens: dict[str, array] = field(default_factory=lambda: {s: array("I") for s in SPLITS})
    prompts: dict[str, array] = field(default_factory=lambda: {s: array("I") for s in SPLITS})


def measure(folder: Path, kind: str, tokenizer) -> RowLengths:
    """Every row's length, rendered with `tokenizer`'s chat template (batched tokenization)."""
    if not tokenizer.chat_template:
        raise FinetuneError(f"{tokenizer.name_or_path}: the tokenizer has no chat template to render with.")
    out = RowLengths()
    batch: list[tuple[str, list[str], str]] = []

    def flush() -> None:
        texts = [t for _, ts, _ in batch for t in ts]
        ids = tokenizer(texts + [p for *_, p in batch], add_special_tokens=False)["input_ids"]
        i, prompt_ids = 0, ids[len(texts) :]
        for (split, ts, _), prompt in zip(batch, prompt_ids, strict=True):
            out.tokens[split].append(max(len(x) for x in ids[i : i + len(ts)]) + (0 if kind == "rl" else _STOP_TOKEN))
            out.prompts[split].append(len(prompt))
            i += len(ts)
        batch.clear()

    for split, _location, row in canonical_rows(folder):
        tools = row.get("tools") or None
        texts = [
            tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=gen)
            for msgs, gen in _sequences(row, kind)
        ]
        prompt_messages = row["messages"] if kind != "sft" else row["messages"][: _last_assistant(row["messages"])]
        prompt = tokenizer.apply_chat_template(prompt_messages, tools=tools, tokenize=False, add_generation_prompt=True)
        batch.append((split, texts, prompt))
        if len(batch) >= TOKEN_BATCH:
            flush()
    if batch:
        flush()
    return out


def _last_assistant(messages: list[dict[str, Any]]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))


def tokenizer_identity(tokenizer_dir: Path | str) -> str:
    """What a tokenizer's counts depend on: its files' bytes for a local folder, else its name."""
    folder = Path(tokenizer_dir)
    if not folder.is_dir():
        return str(tokenizer_dir)
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    return digest.hexdigest()[:24]


def row_lengths(folder: Path, kind: str, content_hash: str, tokenizer_dir: Path | str, cache: Path) -> RowLengths:
    """`measure`, cached under `cache` by the dataset's content hash and the tokenizer (a launch asks every time)."""
    key = hashlib.sha256(f"{content_hash}:{kind}:{tokenizer_identity(tokenizer_dir)}".encode()).hexdigest()[:32]
    path = cache / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        tokens, prompts = ({s: array("I", v) for s, v in data[k].items()} for k in ("tokens", "prompts"))
        return RowLengths(tokens, prompts)
    from transformers import AutoTokenizer

    lengths = measure(folder, kind, AutoTokenizer.from_pretrained(str(tokenizer_dir)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"tokens": _lists(lengths.tokens), "prompts": _lists(lengths.prompts)}))
    os.replace(tmp, path)
    return lengths


def _lists(arrays: dict[str, array]) -> dict[str, list[int]]:
    return {k: v.tolist() for k, v in arrays.items()}


def count_over(lengths: RowLengths, policy: LengthPolicy, tokenizer: str, folder: Path | None = None) -> OverLength:
    """How many rows of each split `policy` cuts or deletes, and the longest rows by location (in `folder`, the
    prepared dataset's, when given)."""
    where = f"{folder}/" if folder is not None else ""
    splits: dict[str, SplitCount] = {}
    candidates: list[tuple[int, str]] = []
    for split in SPLITS:
        tokens, prompts = lengths.tokens[split], lengths.prompts[split]
        if policy.limit is None:
            splits[split] = SplitCount(len(tokens), 0)
            continue
        over = [i for i, n in enumerate(tokens) if n > policy.limit]
        answer_over = sum(1 for i in over if tokens[i] - prompts[i] > policy.limit)
        cut_answers = answer_over if policy.action == "truncate_left" else 0
        splits[split] = SplitCount(len(tokens), len(over), cut_answers)
        candidates += heapq.nlargest(
            LONGEST_SHOWN, ((tokens[i], f"{where}canonical/{split}.jsonl:{i + 1}") for i in over)
        )
    longest = [(loc, n) for n, loc in heapq.nlargest(LONGEST_SHOWN, candidates)]
    return OverLength(policy, tokenizer, splits, longest)
