"""What the trainer really trains, recorded from inside a run (a trainer callback, through FINETUNE_CALLBACKS).

At train start, rank 0 passes every row of the trainer's own training dataset through the trainer's own data
collator, one row per batch, and writes the decoded text and trained spans (labels != -100) of each sequence the
batch holds to TRAINED_SPANS_OUT as JSON lines: `{"sequences": [{"text", "trained"}, ...]}` (DPO: chosen, then
rejected, as ms-swift's collator stacks them). Tests compare these with the official rendering and with
`finetune check-format`, so the checker and the trainer are shown to agree on the loss mask.
"""

from __future__ import annotations

import json
import os

from transformers import TrainerCallback

from finetune.frameworks.trainer.trained_spans import spans

OUT_ENV = "TRAINED_SPANS_OUT"


class RecordTrainedSpans(TrainerCallback):
    def on_train_begin(self, args, state, control, train_dataloader=None, processing_class=None, **kwargs):
        path = os.environ.get(OUT_ENV)
        if not state.is_world_process_zero or not path or train_dataloader is None:
            return
        tokenizer = getattr(processing_class, "tokenizer", None) or processing_class
        dataset, collate = train_dataloader.dataset, train_dataloader.collate_fn
        with open(path, "w") as f:
            for index in range(len(dataset)):
                batch = collate([dataset[index]])
                ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
                mask = batch["attention_mask"].tolist() if batch.get("attention_mask") is not None else None
                sequences = []
                for k, (row_ids, row_labels) in enumerate(zip(ids, labels, strict=True)):
                    text = [i for j, i in enumerate(row_ids) if mask is None or mask[k][j]]  # without the padding
                    trained = spans(tokenizer, row_ids, row_labels)
                    sequences.append({"text": tokenizer.decode(text), "trained": trained})
                f.write(json.dumps({"sequences": sequences}) + "\n")
