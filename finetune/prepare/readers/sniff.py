"""Which reader a text file needs, told by its first bytes rather than its name where the two disagree.

A file named .jsonl may be Parquet, a .json file may hold JSON Lines, and a file without a known suffix may hold
either JSON form; an empty or binary file is a problem with the whole file, reported before any reader runs.
"""

from __future__ import annotations

from pathlib import Path

from finetune.prepare.jsonio import loads
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers.source import Source, open_binary

SNIFF_BYTES = 8192


def text_container(source: Source) -> str | RowProblem:
    """The container to read `source` as (jsonl, json, csv, tsv, parquet), or the problem with the whole file."""
    head = _head(source.path)
    problem = _file_problem(head)
    if problem is not None:
        return problem
    if head.startswith(b"PAR1"):  # Parquet whatever its name
        return "parquet"
    container = source.container
    if container == "sniff":
        container = _sniff(head)
        if container is None:
            return _unknown_container(source.path)
    if container == "json":
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        container = "json" if text.startswith(b"[") else "jsonl"
        first_line = text.split(b"\n", 1)[0]
        if container == "jsonl" and b"\n" in text and not _parses(first_line):
            return RowProblem(
                "<file>",
                "a .json file must hold one JSON array of rows (or one JSON object per line, JSONL); "
                "this one holds something else, such as an object spread over several lines",
                "Write the rows as `[{...}, {...}]`, or as JSONL; for rows under a key, extract that list.",
            )
    return container


def _head(path: Path) -> bytes:
    try:
        with open_binary(path) as f:
            return f.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        return b"\x00" + str(exc).encode()  # an unreadable compressed file reads as binary


def _file_problem(head: bytes) -> RowProblem | None:
    if not head.strip():
        return RowProblem(
            "<file>", "the file is empty", "Remove it from the inputs, or check that it was written completely."
        )
    if head.startswith(b"PAR1"):
        return None
    if b"\x00" in head:
        return RowProblem(
            "<file>",
            "this is a binary file, not JSONL, JSON or CSV text",
            "Give a JSONL, JSON, CSV or Parquet file (Parquet files need the .parquet suffix), "
            "or a folder saved by `datasets`.",
        )
    return None


def _sniff(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    return None


def _parses(line: bytes) -> bool:
    try:
        loads(line)
        return True
    except ValueError:
        return False


def _unknown_container(path: Path) -> RowProblem:
    return RowProblem(
        "<file>",
        f"cannot tell what kind of file `{path.name}` is (not JSON, JSONL or Parquet by its content)",
        "Name it .jsonl, .json, .csv, .tsv or .parquet, or convert it to one of those.",
    )
