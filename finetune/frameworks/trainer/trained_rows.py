"""How many rows the trainer really trains, written into the launch manifest beside the rows prepared.

A framework may leave rows out while it builds its dataset (ms-swift deletes over-length rows by default,
LLaMA-Factory drops rows it cannot convert); the launcher predicts the first (finetune/launch/lengths.py), and
this records what happened: the length of the training dataset the trainer iterates, read when training starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback

from finetune.tracking import MANIFEST_ENV


def record_trained_rows(manifest: Path, rows: int) -> None:
    """Add `dataset.rows_trained` to the manifest, replacing the file atomically."""
    data = json.loads(manifest.read_text())
    dataset = data.get("dataset") or {}
    dataset["rows_trained"] = {"train": rows}
    data["dataset"] = dataset
    tmp = manifest.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, manifest)


class TrainedRows(TrainerCallback):
    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        path = os.environ.get(MANIFEST_ENV)
        dataset = getattr(train_dataloader, "dataset", None)
        if not state.is_world_process_zero or not path or not Path(path).is_file() or dataset is None:
            return
        try:
            rows = len(dataset)
        except TypeError:  # a streamed dataset has no length
            return
        record_trained_rows(Path(path), rows)
