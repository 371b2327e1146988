"""Read rows from the user's files, one at a time, whatever the container: one module a container.

Every reader streams: JSONL line by line, JSON arrays element by element (an incremental parser over chunks),
CSV record by record, Parquet and `datasets` folders record batch by record batch. Each row comes with where it
came from (`file:line`, or `file:row N` where a file has no lines), so every problem can be pointed at.

A problem that makes a row unreadable (a truncated JSON line, bytes that are not UTF-8) is not raised here: it
travels with the row, so the pipeline can stop on it or write it to the rejects file, as the user chose.

source      Source (one input) and RawRow (one row as read)
inputs      what the user typed -> sources
sniff       which reader a text file needs, by its first bytes
jsonl, json_array, delimited (CSV/TSV), arrow (Parquet, Arrow, `datasets` folders), hub
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from finetune.prepare.problems import RowProblem
from finetune.prepare.readers import arrow, delimited, hub, json_array, jsonl
from finetune.prepare.readers.inputs import HUB_ID, expand_inputs
from finetune.prepare.readers.sniff import text_container
from finetune.prepare.readers.source import Progress, RawRow, Source

__all__ = ["HUB_ID", "RawRow", "Source", "expand_inputs", "read_source"]

Reader = Callable[[Source, int, Progress], Iterator[RawRow]]

READERS: dict[str, Reader] = {
    "jsonl": jsonl.read,
    "json": json_array.read,
    "csv": delimited.read,
    "tsv": delimited.read,
    "parquet": arrow.read,
    "arrow": arrow.read,
    "arrow_dir": arrow.read,
    "hub": hub.read,
}
READ_AS_NAMED = ("hub", "arrow_dir", "arrow", "parquet")
"""Containers read as `expand_inputs` named them; text files are sniffed first (see sniff.py)."""


def read_source(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Every row of one source, in order."""
    container = source.container
    if container not in READ_AS_NAMED:
        container = text_container(source)
        if isinstance(container, RowProblem):
            progress(source.size)
            yield RawRow(source.label, None, None, problem=container, source_index=index)
            return
        if container == "parquet":
            source = Source(source.label, "parquet", source.path)
    yield from READERS[container](source, index, progress)
