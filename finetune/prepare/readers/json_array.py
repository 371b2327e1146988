"""A JSON array of rows, parsed element by element from a sliding window of text (never the whole file at once).

A problem in the array's syntax stops the file there (the rest cannot be told apart); the elements before it
are rows like any other.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path

from finetune.prepare.jsonio import STANDARD_DECODER
from finetune.prepare.problems import RowProblem
from finetune.prepare.readers.source import Progress, RawRow, Source, open_binary

WHITESPACE = re.compile(r"[ \t\r\n]*")
CHUNK_CHARS = 1 << 20
_COMPLETE_IT = "Complete the file; a file cut off while writing loses its end."
_FIX_HERE = "Fix the JSON here; the rest of the file cannot be read until it is valid."

TRUNCATED_ARRAY = RowProblem(
    "<file>", "the file ends inside the JSON array (no closing `]`): it looks truncated", _COMPLETE_IT
)
NOT_AN_ARRAY = RowProblem(
    "<file>",
    "a .json file must hold one JSON array of rows, or one JSON object per line",
    "Write the rows as `[{...}, {...}]`, or as JSONL.",
)
TEXT_AFTER_ARRAY = RowProblem(
    "<file>", "there is more text after the closing `]` of the JSON array", "Remove it, or write one array per file."
)
TRUNCATED_ELEMENT = RowProblem("<element>", "the file ends inside this element: it looks truncated", _COMPLETE_IT)
EMPTY_ARRAY = RowProblem("<file>", "the JSON array is empty", "Give a file with data.")


class _Chars:
    """UTF-8 text of a file, chunk by chunk, counting lines; bytes that are not UTF-8 stop it with a problem."""

    def __init__(self, path: Path, progress: Progress) -> None:
        self.file = open_binary(path)
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.progress = progress
        self.eof = False
        self.bad_line = 1  # where bytes that are not UTF-8 were found
        self.bad_column = 1
        self._lines = 1

    def read(self) -> str:
        data = self.file.read(CHUNK_CHARS)
        self.progress(len(data))
        if not data:
            self.eof = True
            return self.decoder.decode(b"", final=True)
        try:
            text = self.decoder.decode(data)
        except UnicodeDecodeError as exc:
            before = data[: exc.start]
            self.bad_line = self._lines + before.count(b"\n")
            self.bad_column = exc.start - before.rfind(b"\n")
            raise
        self._lines += data.count(b"\n")
        return text

    def close(self) -> None:
        self.file.close()


def read(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Elements of a top-level JSON array, parsed one at a time from a sliding window of text."""
    decoder = STANDARD_DECODER
    chars = _Chars(source.path, progress)
    label = source.label
    buf, pos, line = "", 0, 1
    state = "open"  # open -> value <-> comma -> done
    count = 0

    def problem(at_line: int | None, p: RowProblem, raw: str | None = None) -> RawRow:
        return RawRow(label, at_line, None, problem=p, raw=raw, source_index=index)

    try:
        while True:
            # skip whitespace, counting lines
            while True:
                m = WHITESPACE.match(buf, pos)
                line += buf.count("\n", pos, m.end())
                pos = m.end()
                if pos < len(buf) or chars.eof:
                    break
                buf, pos = buf[pos:] + chars.read(), 0
            if pos >= len(buf):
                if state != "done":
                    yield problem(line, TRUNCATED_ARRAY)
                break
            ch = buf[pos]
            if state == "open":
                if buf.startswith("\ufeff", pos):
                    pos += 1
                    continue
                if ch != "[":
                    yield problem(line, NOT_AN_ARRAY)
                    break
                pos += 1
                state = "value"
                continue
            if state == "done":
                yield problem(line, TEXT_AFTER_ARRAY)
                break
            if state == "comma":
                if ch == ",":
                    pos += 1
                    state = "value"
                    continue
                if ch == "]":
                    pos += 1
                    state = "done"
                    continue
                yield problem(
                    line, RowProblem("<file>", f"expected `,` or `]` between array elements, found `{ch}`", _FIX_HERE)
                )
                break
            if ch == "]" and count == 0:
                pos += 1
                state = "done"
                continue
            start_line = line
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    if end >= len(buf) and not chars.eof:
                        raise json.JSONDecodeError("value may continue", buf, end)
                    break
                except json.JSONDecodeError as exc:
                    incomplete = exc.pos >= len(buf) - 1 or exc.msg.startswith(("Unterminated", "value may"))
                    if chars.eof or not incomplete:
                        if chars.eof and incomplete:
                            p = TRUNCATED_ELEMENT
                        else:
                            at_line = buf.count("\n", 0, exc.pos) - buf.count("\n", 0, pos) + start_line
                            p = RowProblem("<element>", f"not valid JSON ({exc.msg}, line {at_line})", _FIX_HERE)
                        yield problem(start_line, p, raw=buf[pos : pos + 2000])
                        return
                    buf, pos = buf[pos:] + chars.read(), 0
            line += buf.count("\n", pos, end)
            pos = end
            count += 1
            yield RawRow(label, start_line, value, source_index=index)
            state = "comma"
            if pos > CHUNK_CHARS:
                buf, pos = buf[pos:], 0
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        yield problem(
            chars.bad_line,
            RowProblem(
                "<line>",
                f"the text is not UTF-8 (byte 0x{bad} at column {chars.bad_column})",
                "Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.json > out.json`.",
            ),
        )
        return
    finally:
        chars.close()
    if state == "done" and count == 0:
        yield problem(None, EMPTY_ARRAY)
