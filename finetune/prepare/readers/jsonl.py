"""JSON Lines: one row a line, read line by line; a line that does not parse is a problem of that line only."""

from __future__ import annotations

import json
from collections.abc import Iterator

from finetune.prepare.jsonio import loads, loads_standard
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers.source import Progress, RawRow, Source, open_binary


def read(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    label = source.label
    line_no = 0
    pending = 0
    rows = 0
    with open_binary(source.path) as f:
        for line in f:
            line_no += 1
            pending += len(line)
            if pending > 1 << 20:
                progress(pending)
                pending = 0
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            rows += 1
            try:
                yield RawRow(label, line_no, loads(line), source_index=index)
                continue
            except ValueError:
                pass
            try:
                text = line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield RawRow(label, line_no, None, problem=_not_utf8(exc), raw=_raw_text(line), source_index=index)
                continue
            try:
                data = loads_standard(text)  # what orjson refuses but the standard decoder takes (huge integers)
                yield RawRow(label, line_no, data, source_index=index)
            except ValueError:
                yield RawRow(label, line_no, None, problem=_bad_json(text, "line"), raw=text, source_index=index)
    progress(pending)
    if rows == 0:
        no_rows = RowProblem("<file>", "the file has no rows", "Give a file with data.")
        yield RawRow(label, None, None, problem=no_rows, source_index=index)


def _raw_text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\n")


def _not_utf8(exc: UnicodeDecodeError) -> RowProblem:
    bad = exc.object[exc.start : exc.start + 1].hex()
    return RowProblem(
        "<line>",
        f"the text is not UTF-8 (byte 0x{bad} at column {exc.start + 1})",
        "Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.jsonl > out.jsonl`.",
    )


def _bad_json(text: str, what: str) -> RowProblem:
    try:
        loads_standard(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            return RowProblem(
                "<line>",
                f"the {what} ends before its JSON value does ({exc.msg}, column {exc.colno}): it looks truncated",
                "Complete or remove this line; a file cut off while writing loses its last line.",
            )
        return RowProblem(
            "<line>",
            f"the {what} is not valid JSON ({exc.msg} at column {exc.colno})",
            "Fix the JSON on this line (each line of a JSONL file is one complete JSON object).",
        )
    except ValueError as exc:  # lone surrogates and other oddities the strict decoder rejects
        return RowProblem("<line>", f"the {what} is not valid JSON ({exc})", "Fix the JSON on this line.")
    return RowProblem(
        "<line>", f"the {what} uses JSON that is not standard (NaN, Infinity or huge integers)", "Use standard JSON."
    )
