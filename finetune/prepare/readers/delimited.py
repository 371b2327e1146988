"""CSV and TSV: one row a record under a header; JSON in conversation and tool columns is decoded, other cells
stay text."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from typing import Any

from finetune.prepare.jsonio import loads_standard
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers.source import Progress, RawRow, Source, open_binary

STRUCTURED_TEXT_COLUMNS = {"messages", "conversations", "conversation", "tools", "history", "chosen", "rejected"}
"""CSV cells that hold JSON (a conversation, a list of tools) rather than plain text."""


def read(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    csv.field_size_limit(min(sys.maxsize, 1 << 31))
    delimiter = "\t" if source.container == "tsv" or source.path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    label = source.label
    sizes = [0]

    def lines() -> Iterator[str]:
        with open_binary(source.path) as f:
            for raw in f:
                sizes[0] += len(raw)
                # bytes that are not UTF-8 survive as lone surrogates and are reported per record below
                yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(lines(), delimiter=delimiter)
    header: list[str] | None = None
    rows = 0
    start = 1
    for record in reader:
        if sizes[0] > 1 << 20:
            progress(sizes[0])
            sizes[0] = 0
        line_no, start = start, reader.line_num + 1
        if header is None:
            header = [h.lstrip("\ufeff").strip() for h in record]
            continue
        if not any(cell.strip() for cell in record):
            continue
        rows += 1
        text = delimiter.join(record)
        bad = next((ch for ch in text if "\udc80" <= ch <= "\udcff"), None)
        if bad is not None:
            raw = text.encode("utf-8", "replace").decode()
            yield RawRow(label, line_no, None, problem=_not_utf8(bad), raw=raw, source_index=index)
            continue
        row, problem = _record(header, record)
        yield RawRow(label, line_no, row, problem=problem, raw=None if problem is None else text, source_index=index)
    progress(sizes[0])
    if rows == 0:
        no_rows = RowProblem("<file>", "the file has no rows", "Give a file with data.")
        yield RawRow(label, None, None, problem=no_rows, source_index=index)


def _not_utf8(bad: str) -> RowProblem:
    return RowProblem(
        "<line>",
        f"the text is not UTF-8 (byte 0x{ord(bad) - 0xDC00:02x})",
        "Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`.",
    )


def _record(header: list[str], record: list[str]) -> tuple[dict[str, Any] | None, RowProblem | None]:
    """(the row, None), or (None, what is wrong with the record)."""
    if len(record) != len(header):
        return None, RowProblem(
            "<line>",
            f"the record has {len(record)} fields but the header has {len(header)}",
            "Quote cells that contain the delimiter or line breaks.",
        )
    row: dict[str, Any] = {}
    for key, cell in zip(header, record, strict=True):
        if key in STRUCTURED_TEXT_COLUMNS and cell.lstrip()[:1] in ("[", "{"):
            try:
                row[key] = loads_standard(cell)
            except ValueError as exc:
                return None, RowProblem(key, f"the cell is not valid JSON ({exc})", "Fix the JSON in this cell.")
        else:
            row[key] = cell
    return row, None
