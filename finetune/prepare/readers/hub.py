"""A dataset on the Hugging Face hub, streamed (for machines that reach the hub)."""

from __future__ import annotations

from collections.abc import Iterator

from finetune.errors import FinetuneError
from finetune.prepare.readers.source import Progress, RawRow, Source


def read(source: Source, index: int, progress: Progress) -> Iterator[RawRow]:
    """Every row of the hub dataset's split; the size of a stream is not known, so `progress` is not told."""
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
