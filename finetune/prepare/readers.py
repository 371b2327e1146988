"""Read rows from the user's files, one at a time, whatever the container.

Every reader streams: JSONL line by line, JSON arrays element by element (an incremental parser over chunks),
CSV record by record, Parquet and `datasets` folders record batch by record batch. Each row comes with where it
came from (`file:line`, or `file:row N` where a file has no lines), so every problem can be pointed at.

A problem that makes a row unreadable (a truncated JSON line, bytes that are not UTF-8) is not raised here: it
travels with the row, so the pipeline can stop on it or write it to the rejects file, as the user chose.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.prepare.jsonio import STANDARD_DECODER, loads, loads_standard
from finetune.prepare.problems import RowProblem

Progress = Callable[[int], None]
"""Called with the number of bytes (or byte-equivalents) just consumed from the input."""

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
STRUCTURED_TEXT_COLUMNS = {"messages", "conversations", "conversation", "tools", "history", "chosen", "rejected"}
"""CSV cells that hold JSON (a conversation, a list of tools) rather than plain text."""

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WHITESPACE = re.compile(r"[ \t\r\n]*")
SNIFF_BYTES = 8192
CHUNK_CHARS = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input: a file, a `datasets` folder (or one split of it), or a hub dataset."""

    label: str  # how locations name it: the path as the user gave it, or the hub id
    container: str  # jsonl, json, csv, tsv, parquet, arrow, arrow_dir, hub
    path: Path | None = None
    split: str | None = None

    @property
    def size(self) -> int:
        """Bytes the progress bar counts for this source (0 when unknown)."""
        if self.path is None:
            return 0
        if self.path.is_dir():
            return sum(f.stat().st_size for f in _arrow_files(self.path))
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


# -- finding the inputs ----------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """The path relative to the working directory when it is inside it (short, and no machine paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _container_of(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return SUFFIXES.get(Path(name).suffix)


def _arrow_files(folder: Path) -> list[Path]:
    state = json.loads((folder / "state.json").read_text())
    return [folder / f["filename"] for f in state.get("_data_files", [])]


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


# -- reading ----------------------------------------------------------------------------------------------------


def read_source(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Every row of one source, in order."""
    if source.container == "hub":
        yield from _read_hub(source, index)
        return
    if source.container in ("arrow_dir", "arrow", "parquet"):
        yield from _read_arrow_like(source, index, progress)
        return
    head = _head(source.path)
    problem = _file_problem(head, source.path)
    if problem is not None:
        progress(source.size)
        yield RawRow(source.label, None, None, problem=problem, source_index=index)
        return
    container = "parquet" if head.startswith(b"PAR1") else source.container  # Parquet whatever its name
    if container == "parquet":
        yield from _read_arrow_like(Source(source.label, "parquet", source.path), index, progress)
        return
    if container == "sniff":
        container = _sniff(head)
        if container is None:
            progress(source.size)
            yield RawRow(source.label, None, None, problem=_unknown_container(source.path), source_index=index)
            return
    if container == "json":
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        container = "json" if text.startswith(b"[") else "jsonl"
        first_line = text.split(b"\n", 1)[0]
        if container == "jsonl" and b"\n" in text and not _parses(first_line):
            progress(source.size)
            yield RawRow(source.label, None, None, source_index=index, problem=RowProblem(
                "<file>", "a .json file must hold one JSON array of rows (or one JSON object per line, JSONL); "
                "this one holds something else, such as an object spread over several lines",
                "Write the rows as `[{...}, {...}]`, or as JSONL; for rows under a key, extract that list.",
            ))  # fmt: skip
            return
    reader = {"jsonl": _read_jsonl, "json": _read_json_array, "csv": _read_csv, "tsv": _read_csv}[container]
    yield from reader(source, index, progress)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _head(path: Path) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        return b"\x00" + str(exc).encode()  # an unreadable compressed file reads as binary


def _file_problem(head: bytes, path: Path) -> RowProblem | None:
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


def _unknown_container(path: Path) -> RowProblem:
    return RowProblem(
        "<file>",
        f"cannot tell what kind of file `{path.name}` is (not JSON, JSONL or Parquet by its content)",
        "Name it .jsonl, .json, .csv, .tsv or .parquet, or convert it to one of those.",
    )


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


def _read_jsonl(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    label = source.label
    line_no = 0
    pending = 0
    rows = 0
    with _open_binary(source.path) as f:
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
        yield RawRow(
            label, None, None, problem=RowProblem("<file>", "the file has no rows", "Give a file with data."),
            source_index=index,
        )  # fmt: skip


def _parses(line: bytes) -> bool:
    try:
        loads(line)
        return True
    except ValueError:
        return False


def _raw_text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\n")


class _Chars:
    """UTF-8 text of a file, chunk by chunk, counting lines; bytes that are not UTF-8 stop it with a problem."""

    def __init__(self, path: Path, progress: Progress) -> None:
        self.file = _open_binary(path)
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


def _read_json_array(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Elements of a top-level JSON array, parsed one at a time from a sliding window of text."""
    decoder = STANDARD_DECODER
    chars = _Chars(source.path, progress)
    label = source.label
    buf, pos, line = "", 0, 1
    state = "open"  # open -> value <-> comma -> done
    count = 0

    def problem(at_line: int, p: RowProblem, raw: str | None = None) -> RawRow:
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
                    yield problem(line, RowProblem(
                        "<file>", "the file ends inside the JSON array (no closing `]`): it looks truncated",
                        "Complete the file; a file cut off while writing loses its end.",
                    ))  # fmt: skip
                break
            ch = buf[pos]
            if state == "open":
                if buf.startswith("\ufeff", pos):
                    pos += 1
                    continue
                if ch != "[":
                    yield problem(line, RowProblem(
                        "<file>", "a .json file must hold one JSON array of rows, or one JSON object per line",
                        "Write the rows as `[{...}, {...}]`, or as JSONL.",
                    ))  # fmt: skip
                    break
                pos += 1
                state = "value"
                continue
            if state == "done":
                yield problem(line, RowProblem(
                    "<file>", "there is more text after the closing `]` of the JSON array",
                    "Remove it, or write one array per file.",
                ))  # fmt: skip
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
                yield problem(line, RowProblem(
                    "<file>", f"expected `,` or `]` between array elements, found `{ch}`",
                    "Fix the JSON here; the rest of the file cannot be read until it is valid.",
                ))  # fmt: skip
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
                        text = buf[pos : pos + 2000]
                        if chars.eof and incomplete:
                            p = RowProblem(
                                "<element>", "the file ends inside this element: it looks truncated",
                                "Complete the file; a file cut off while writing loses its end.",
                            )  # fmt: skip
                        else:
                            p = RowProblem(
                                "<element>",
                                f"not valid JSON ({exc.msg}, line {buf.count(chr(10), 0, exc.pos) - buf.count(chr(10), 0, pos) + start_line})",
                                "Fix the JSON here; the rest of the file cannot be read until it is valid.",
                            )  # fmt: skip
                        yield problem(start_line, p, raw=text)
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
        yield problem(chars.bad_line, RowProblem(
            "<line>", f"the text is not UTF-8 (byte 0x{bad} at column {chars.bad_column})",
            "Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.json > out.json`.",
        ))  # fmt: skip
        return
    finally:
        chars.close()
    if state == "done" and count == 0:
        yield problem(None, RowProblem("<file>", "the JSON array is empty", "Give a file with data."))


def _read_csv(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """CSV/TSV records; JSON in conversation and tool columns is decoded, other cells stay text."""
    csv.field_size_limit(min(sys.maxsize, 1 << 31))
    delimiter = "\t" if source.container == "tsv" or source.path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    label = source.label
    sizes = [0]

    def lines() -> Iterator[str]:
        with _open_binary(source.path) as f:
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
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            bad = next(ch for ch in text if "\udc80" <= ch <= "\udcff")
            p = RowProblem(
                "<line>", f"the text is not UTF-8 (byte 0x{ord(bad) - 0xDC00:02x})",
                "Re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`.",
            )  # fmt: skip
            yield RawRow(label, line_no, None, problem=p, raw=text.encode("utf-8", "replace").decode(),
                         source_index=index)  # fmt: skip
            continue
        if len(record) != len(header):
            p = RowProblem(
                "<line>", f"the record has {len(record)} fields but the header has {len(header)}",
                "Quote cells that contain the delimiter or line breaks.",
            )  # fmt: skip
            yield RawRow(label, line_no, None, problem=p, raw=text, source_index=index)
            continue
        row: dict[str, Any] = {}
        problem = None
        for key, cell in zip(header, record):
            if key in STRUCTURED_TEXT_COLUMNS and cell.lstrip()[:1] in ("[", "{"):
                try:
                    row[key] = loads_standard(cell)
                except ValueError as exc:
                    problem = RowProblem(key, f"the cell is not valid JSON ({exc})", "Fix the JSON in this cell.")
                    break
            else:
                row[key] = cell
        if problem:
            yield RawRow(label, line_no, None, problem=problem, raw=text, source_index=index)
        else:
            yield RawRow(label, line_no, row, source_index=index)
    progress(sizes[0])
    if rows == 0:
        yield RawRow(label, None, None, problem=RowProblem("<file>", "the file has no rows", "Give a file with data."),
                     source_index=index)  # fmt: skip


def _read_arrow_like(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Parquet files and `datasets` folders, one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = source.size
    try:
        if source.container == "parquet":
            pf = pq.ParquetFile(source.path)
            total = pf.metadata.num_rows
            batches = pf.iter_batches(batch_size=1024)
        else:
            files = [source.path] if source.container == "arrow" else _arrow_files(source.path)
            total = None
            batches = (b for f in files for b in _arrow_batches(f))
    except (OSError, pa.ArrowException, ValueError) as exc:
        progress(size)
        yield RawRow(source.label, None, None, source_index=index, problem=RowProblem(
            "<file>", f"cannot read it as {'Parquet' if source.container == 'parquet' else 'Arrow'} ({exc})",
            "Check that the file is complete and in the format its name says.",
        ))  # fmt: skip
        return
    n = 0
    try:
        for batch in batches:
            rows = batch.to_pylist()
            for row in rows:
                n += 1
                yield RawRow(source.label, n, row, unit="row ", source_index=index, from_arrow=True)
            if total:
                progress(int(size * len(rows) / total))
    except (OSError, pa.ArrowException, ValueError) as exc:
        kind = "Parquet" if source.container == "parquet" else "Arrow"
        what = f"cannot read it as {kind} ({exc})" if n == 0 else f"cannot read the rest of the data ({exc})"
        yield RawRow(source.label, None if n == 0 else n + 1, None, unit="row ", source_index=index,
                     problem=RowProblem("<file>", what, "Check that the files are complete and in the format "
                                        "their names say."))  # fmt: skip
        return
    if total is None:
        progress(size)
    if n == 0:
        yield RawRow(source.label, None, None, problem=RowProblem("<file>", "the dataset has no rows", "Give data."),
                     source_index=index)  # fmt: skip


def _arrow_batches(path: Path):
    """Record batches of an Arrow file: the stream format `datasets` writes, or the random-access file format."""
    import pyarrow as pa

    source = pa.memory_map(str(path))
    try:
        yield from pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _read_hub(source: Source, index: int) -> Iterator[RawRow]:
    try:
        import datasets

        stream = datasets.load_dataset(source.label, split=source.split, streaming=True)
        for n, row in enumerate(stream, 1):
            yield RawRow(f"{source.label}[{source.split}]", n, row, unit="row ", source_index=index, from_arrow=True)
    except Exception as exc:  # any failure to reach or read the hub is reported the same way
        raise FinetuneError(
            f"{source.label}: could not load it from the hub ({type(exc).__name__}: {exc}). Hub datasets need a "
            "machine that reaches the hub; otherwise download the files and give their local paths."
        ) from exc
