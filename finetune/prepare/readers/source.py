"""What every reader is given and gives back: one input, and each row with the place it came from."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[int], None]
"""Called with the number of bytes (or byte-equivalents) just consumed from the input."""


def arrow_files(folder: Path) -> list[Path]:
    """The Arrow files of a folder saved by `datasets` (save_to_disk), in order."""
    state = json.loads((folder / "state.json").read_text())
    return [folder / f["filename"] for f in state.get("_data_files", [])]


def open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


@dataclass(frozen=True)
class Source:
    """One input: a file, a `datasets` folder (or one split of it), or a hub dataset."""

    label: str  # how locations name it: the path as the user gave it, or the hub id
    container: str  # jsonl, json, csv, tsv, parquet, arrow, arrow_dir, hub, sniff
    path: Path | None = None
    split: str | None = None

    @property
    def size(self) -> int:
        """Bytes the progress bar counts for this source (0 when unknown)."""
        if self.path is None:
            return 0
        if self.path.is_dir():
            return sum(f.stat().st_size for f in arrow_files(self.path))
        return self.path.stat().st_size


class RawRow:
    """A row as read: parsed data, or the problem that kept it from being read."""

    __slots__ = ("data", "from_arrow", "label", "line", "problem", "raw", "source_index", "unit")

    def __init__(self, label, line, data, *, unit="", problem=None, raw=None, source_index=0, from_arrow=False):
        self.label = label
        self.line = line
        self.unit = unit
        self.data = data
        self.problem = problem
        self.raw = raw
        self.source_index = source_index
        self.from_arrow = from_arrow

    @property
    def location(self) -> str:
        if self.line is None:
            return self.label
        return f"{self.label}:{self.unit}{self.line}"
