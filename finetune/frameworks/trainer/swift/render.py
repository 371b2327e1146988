"""Render prepared SWIFT files with ms-swift's own loader and GLM-4.5 template (runs in the swift environment).

Run as `python -m finetune.frameworks.trainer.swift.render` in ms-swift's environment (by `finetune check-format`
and the tests), since ms-swift cannot share the launcher's environment. Reads a JSON request on stdin:
  {"tokenizer": DIR, "files": [{"path": JSONL, "kind": "sft"|"preference"|"rl", "command": "sft"|"rlhf",
                                 "arguments": {the recipe's ms-swift arguments that shape the template}}]}
The template is built from ms-swift's own argument class for the command (SftArguments, RLHFArguments), as a
training run builds it: the class decides the loss scale (`last_round` for DPO, `+ignore_empty_think` for GLM's
hybrid thinking unless disabled), so what is reported here is what the trainer masks.
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
import tempfile
import warnings

from finetune.frameworks.trainer.trained_spans import rendered  # noqa: E402  (the caller puts the repo on the path)


def _template_kwargs(tokenizer_dir: str, item: dict) -> dict:
    """What `swift sft|rlhf` passes to get_template for these arguments, from ms-swift's own argument class."""
    from swift.arguments import RLHFArguments, SftArguments

    cls = RLHFArguments if item["command"] == "rlhf" else SftArguments
    arguments = dict(item.get("arguments", {}))
    if arguments.get("rlhf_type") == "grpo":  # GRPO's batch rule (generations divide the batch); no template effect
        arguments |= {"num_generations": 2, "per_device_train_batch_size": 2}
    with tempfile.TemporaryDirectory() as out:
        args = cls(
            model=tokenizer_dir,
            dataset=[item["path"]],
            output_dir=out,
            check_model=False,
            torch_dtype="float32",
            **arguments,
        )
    return args.get_template_kwargs()


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    request = json.load(sys.stdin)
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    from finetune.frameworks.trainer.swift.glm47 import write_glm47_format
    from finetune.frameworks.trainer.swift.header_newline import train_header_newline
    from finetune.frameworks.trainer.swift.history_reasoning import keep_tool_loop_reasoning
    from finetune.frameworks.trainer.swift.tool_schemas import keep_json_text_tool_schemas

    train_header_newline()  # as the training entry does
    keep_tool_loop_reasoning()
    keep_json_text_tool_schemas()
    write_glm47_format()
    tokenizer = get_processor(request["tokenizer"], model_type="glm4_moe", download_model=False)
    results = []
    for item in request["files"]:
        kwargs = _template_kwargs(request["tokenizer"], item)
        template = get_template(tokenizer, **{**kwargs, "max_length": 1 << 16})  # whole rows, never truncated
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
