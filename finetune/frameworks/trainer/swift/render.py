"""Render prepared SWIFT files with ms-swift's own loader and GLM-4.5 template (runs in the swift environment).

Run as `python -m finetune.frameworks.trainer.swift.render` in ms-swift's environment (by `finetune check-format`
and the tests), since ms-swift cannot share the launcher's environment. Reads a JSON request on stdin:
  {"tokenizer": DIR, "files": [{"path": JSONL, "kind": "sft"|"preference"|"rl"}],
   "template": NAME (default glm4_5), "template_args": {get_template keyword arguments from the recipe}}
and prints one JSON object: {"files": [{"columns": [...], "rows": [...]}]}, where each row holds the decoded
text of every sequence ms-swift would train on and the spans its labels select:
  sft         {"text", "trained"}
  preference  {"chosen": {"text", "trained"}, "rejected": {...}}
  rl          {"prompt": text with the generation prompt, "row": the row as ms-swift's loader returns it}
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

from finetune.frameworks.trainer.trained_spans import rendered  # noqa: E402  (the caller puts the repo on the path)


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    request = json.load(sys.stdin)
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    from finetune.frameworks.trainer.swift.header_newline import train_header_newline

    train_header_newline()  # as the training entry does
    tokenizer = get_processor(request["tokenizer"], model_type="glm4_moe", download_model=False)
    template = get_template(
        tokenizer,
        template_type=request.get("template", "glm4_5"),
        max_length=1 << 16,
        **request.get("template_args", {}),
    )
    results = []
    for item in request["files"]:
        # GRPO keeps the columns reward functions read (ms-swift sets remove_unused_columns=False for it)
        dataset, _ = load_dataset(
            [item["path"]], num_proc=1, load_from_cache_file=False, remove_unused_columns=item["kind"] != "rl"
        )
        rows = []
        for row in dataset:
            row = dict(row)
            if item["kind"] == "sft":
                template.set_mode("train")
                rows.append(rendered(tokenizer, template.encode(row)))
            elif item["kind"] == "preference":
                template.set_mode("rlhf")
                encoded = template.encode(row)
                rows.append({k: rendered(tokenizer, encoded, f"{k}_") for k in ("chosen", "rejected")})
            else:
                template.set_mode("transformers")
                encoded = template.encode({"messages": row["messages"], "tools": row.get("tools")})
                rows.append({"prompt": tokenizer.decode(encoded["input_ids"]), "row": row})
        results.append({"columns": list(dataset.features), "rows": rows})
    sys.stdout.flush()
    print("\n" + json.dumps({"files": results}, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
