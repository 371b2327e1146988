"""What the user typed, turned into sources: files, folders of files, `datasets` folders, hub ids."""

from __future__ import annotations

import json
import re
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.prepare.readers.source import Source

SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _display(path: Path) -> str:
    """The path relative to the working directory when it is inside it (short, and no machine paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _container_of(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return SUFFIXES.get(Path(name).suffix)


def expand_inputs(inputs: list[str], split: str | None = None) -> list[Source]:
    """Turn what the user typed into sources: files, folders of files, `datasets` folders, hub ids."""
    sources: list[Source] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            sources.extend(_expand_folder(path, split))
        elif path.is_file():
            sources.append(Source(_display(path), _container_of(path) or "sniff", path))
        elif HUB_ID.match(text):
            sources.append(Source(text, "hub", None, split or "train"))
        else:
            raise FinetuneError(
                f"{text}: no such file or folder. Give JSONL, JSON, CSV or Parquet files, folders of them, a folder "
                "saved by `datasets` (save_to_disk), or a hub dataset id like `owner/name`."
            )
    return sources


def _expand_folder(path: Path, split: str | None) -> list[Source]:
    if (path / "state.json").is_file():
        return [Source(_display(path), "arrow_dir", path)]
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split is not None:
            if split not in splits:
                raise FinetuneError(f"{path}: no split `{split}`; the folder has {', '.join(splits)}.")
            splits = [split]
        return [Source(_display(path / s), "arrow_dir", path / s, s) for s in splits]
    files = sorted(p for p in path.iterdir() if p.is_file() and _container_of(p))
    if not files:
        raise FinetuneError(
            f"{path}: the folder holds no JSONL, JSON, CSV or Parquet files and was not saved by `datasets`."
        )
    return [Source(_display(p), _container_of(p) or "sniff", p) for p in files]
