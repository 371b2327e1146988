"""Parquet files, Arrow files and folders saved by `datasets`, one record batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from finetune.prepare.problems import RowProblem
from finetune.prepare.readers.source import Progress, RawRow, Source, arrow_files


def read(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = source.size
    kind = "Parquet" if source.container == "parquet" else "Arrow"
    try:
        if source.container == "parquet":
            pf = pq.ParquetFile(source.path)
            total = pf.metadata.num_rows
            batches = pf.iter_batches(batch_size=1024)
        else:
            files = [source.path] if source.container == "arrow" else arrow_files(source.path)
            total = None
            batches = (b for f in files for b in _arrow_batches(f))
    except (OSError, pa.ArrowException, ValueError) as exc:
        progress(size)
        problem = RowProblem(
            "<file>",
            f"cannot read it as {kind} ({exc})",
            "Check that the file is complete and in the format its name says.",
        )
        yield RawRow(source.label, None, None, source_index=index, problem=problem)
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
        what = f"cannot read it as {kind} ({exc})" if n == 0 else f"cannot read the rest of the data ({exc})"
        problem = RowProblem("<file>", what, "Check that the files are complete and in the format their names say.")
        yield RawRow(source.label, None if n == 0 else n + 1, None, unit="row ", source_index=index, problem=problem)
        return
    if total is None:
        progress(size)
    if n == 0:
        no_rows = RowProblem("<file>", "the dataset has no rows", "Give data.")
        yield RawRow(source.label, None, None, problem=no_rows, source_index=index)


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
