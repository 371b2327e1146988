"""The manifest of a prepared dataset (`manifest.json`), as one typed value.

`prepare` writes it, and everything that reads a prepared dataset (the launch plan and record, the tracking
manifest, the format check, the CLI's summary) reads it through `read_manifest` / `PreparedDataset.manifest`,
by attribute. The types mirror the file field for field, in its order: `to_json` of what `read_manifest` returned
writes the same bytes back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

MANIFEST = "manifest.json"
FORMAT_VERSION = 3
"""Bump when a change to conversion or writing changes what `prepare` produces from the same input."""

Kind = Literal["sft", "preference", "rl"]


def _only_with(key: str) -> Any:
    """A field written only when the field `key` is set (a default of None when the file leaves it out)."""
    return field(default=None, metadata={"only_with": key})


@dataclass(frozen=True)
class SourceEntry:
    """One input as the run read it."""

    path: str  # as the user gave it (relative to the working directory when inside it), or the hub id
    container: str
    rows_read: int


@dataclass(frozen=True)
class ShapingOptions:
    """The options that change what is written (part of the content hash)."""

    name: str
    format: str
    kind: str
    map: dict[str, str]
    roles: dict[str, str]
    vars: dict[str, str]  # --var NAME=VALUE: placeholders filled before validation
    val_ratio: float
    seed: int
    skip_invalid: bool
    strict: bool  # unfilled placeholders are invalid rows
    dedupe: bool
    split: str | None
    # False: the conversations were made with earlier turns' reasoning in the context (GLM-4.7's preserved
    # thinking, `clear_thinking=False`), and are trained and served so (docs/datasets.md)
    clear_thinking: bool = True


@dataclass(frozen=True)
class RowCounts:
    read: int
    kept: int
    rejected: int
    rejected_files: int
    duplicates: int
    duplicates_dropped: int
    train: int
    val: int


@dataclass(frozen=True)
class Percentiles:
    min: int
    p50: int
    p90: int
    p99: int
    max: int
    mean: float


@dataclass(frozen=True)
class Statistics:
    """What the kept rows hold: layouts, turns, tool use, reasoning, sizes."""

    layouts: dict[str, int]
    messages: int
    messages_per_row: float
    assistant_turns: int
    rows_with_system: int
    rows_with_tools: int
    rows_calling_tools: int
    tool_calls: int
    parallel_call_turns: int
    rows_with_reasoning: int
    row_bytes: Percentiles | None


@dataclass(frozen=True)
class PlaceholderExample:
    """Where a placeholder first occurs in the written rows."""

    location: str  # file:line of the input row
    field: str  # where in the canonical row: messages[2].content, chosen.content, ...
    excerpt: str  # the text around it


@dataclass(frozen=True)
class PlaceholderReport:
    """Template placeholders (`{{name}}`) still in the written rows, and those `--var` filled."""

    rows: int  # rows holding at least one unfilled placeholder
    names: dict[str, int]  # name -> rows holding it, most first
    examples: dict[str, PlaceholderExample]  # name -> its first occurrence
    filled: dict[str, int]  # --var name -> placeholders it filled


@dataclass(frozen=True)
class TokenStats:
    """Token lengths of the rows (each row's longest training sequence, its stop token included); the rows over a
    recipe's length limit, per split, and what its framework does with them, only when a recipe was given."""

    tokenizer: str
    lengths: Percentiles | None
    recipe: str | None = _only_with("seq_len")
    seq_len: int | None = _only_with("seq_len")
    rows_over_seq_len: int | None = _only_with("seq_len")
    examples_over_seq_len: list[str] | None = _only_with("seq_len")
    over_by_split: dict[str, int] | None = _only_with("seq_len")  # rows over the limit, per split
    rows_by_split: dict[str, int] | None = _only_with("seq_len")
    handling: str | None = _only_with("seq_len")  # what the recipe's framework does with them, and the setting


@dataclass(frozen=True)
class OutputFile:
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class LlamaFactoryEntry:
    """Where LLaMA-Factory finds the dataset: its registry and the names it takes."""

    dataset_dir: str
    registry: str
    train: str
    val: str | None


@dataclass(frozen=True)
class SwiftEntry:
    train: str
    val: str | None


@dataclass(frozen=True)
class Manifest:
    format_version: int
    name: str
    kind: Kind
    content_hash: str | None  # None when an input is a hub dataset
    sources: list[SourceEntry]
    options: ShapingOptions
    counts: RowCounts
    statistics: Statistics
    placeholders: PlaceholderReport
    token_stats: TokenStats | None
    outputs: dict[str, OutputFile]  # path inside the dataset folder -> what was written there
    llamafactory: LlamaFactoryEntry | None  # None for RL prompts
    swift: SwiftEntry
    notes: list[str]


# -- JSON --------------------------------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """Plain JSON values for a manifest (or any part of it), fields in declaration order."""
    if is_dataclass(value):
        return {
            f.name: to_json(getattr(value, f.name))
            for f in fields(value)
            if "only_with" not in f.metadata or getattr(value, f.metadata["only_with"]) is not None
        }
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _from_json(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if value is None:
        return None
    if origin in (Union, UnionType):
        (inner,) = [arg for arg in get_args(tp) if arg is not type(None)]
        return _from_json(inner, value)
    if is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{f.name: _from_json(hints[f.name], value[f.name]) for f in fields(tp) if f.name in value})
    if origin is list:
        (item,) = get_args(tp)
        return [_from_json(item, v) for v in value]
    if origin is dict:
        _, item = get_args(tp)
        return {k: _from_json(item, v) for k, v in value.items()}
    return value


def from_json(data: Any) -> Manifest:
    """The manifest a parsed manifest.json holds; ValueError when it is not one."""
    try:
        return _from_json(Manifest, data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        what = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{MANIFEST} does not hold a prepared dataset's manifest ({what})") from exc


def load_manifest(folder: Path) -> Manifest:
    """The manifest in `folder`; OSError or ValueError when there is none, or it is not one."""
    return from_json(json.loads((folder / MANIFEST).read_text()))


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest in `folder`, or None when there is none (or it is not one)."""
    try:
        return load_manifest(folder)
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(json.dumps(to_json(manifest), indent=2, ensure_ascii=False) + "\n")
