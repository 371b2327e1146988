"""Load prepared datasets with LLaMA-Factory's own loader (dataset_info.json) and render them with its template.

Run as `python -m finetune.frameworks.trainer.llamafactory.render` (by `finetune check-format` and the tests) in a
process of its own, so LLaMA-Factory's global state (logging, argument parsing, datasets cache) stays out of the
caller. Reads a JSON request on stdin:
  {"model": DIR, "datasets": [{"dir": DATASET_DIR, "name": NAME, "kind": "sft"|"preference", "template": NAME,
                               "data_args": {LLaMA-Factory data arguments of the recipe that change the rendering}}]}
and prints one JSON object: {"datasets": [{"rows": [...]}]} where each row holds the decoded text of every
sequence LLaMA-Factory would train on and the spans its labels select:
  sft         {"text", "trained"}
  preference  {"chosen": {"text", "trained"}, "rejected": {...}}
The template `glm45` is the project's corrected GLM-4.5 template, registered on import of
finetune.frameworks.trainer.llamafactory.template.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import tempfile
import warnings

from finetune.frameworks.trainer.trained_spans import rendered  # noqa: E402  (the caller puts the repo on the path)


def main() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    request = json.load(sys.stdin)
    if importlib.util.find_spec("finetune.frameworks.trainer.llamafactory.template") is not None:
        importlib.import_module("finetune.frameworks.trainer.llamafactory.template")
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    logging.disable(logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as out:
        for item in request["datasets"]:
            stage = "rm" if item["kind"] == "preference" else "sft"
            args = {
                "model_name_or_path": request["model"],
                "stage": stage,
                "do_train": True,
                "finetuning_type": "lora",
                "dataset": item["name"],
                "dataset_dir": item["dir"],
                "template": item["template"],
                "cutoff_len": 1 << 16,
                "output_dir": out,
                "overwrite_cache": True,
                "report_to": "none",
                "use_cpu": True,
                "bf16": False,
                **item.get("data_args", {}),
            }
            model_args, data_args, training_args, _, _ = get_train_args(args)
            tokenizer_module = load_tokenizer(model_args)
            tokenizer = tokenizer_module["tokenizer"]
            template = get_template_and_fix_tokenizer(tokenizer, data_args)
            module = get_dataset(template, model_args, data_args, training_args, stage, **tokenizer_module)
            rows = []
            for row in module["train_dataset"]:
                if stage == "rm":
                    rows.append({k: rendered(tokenizer, row, f"{k}_") for k in ("chosen", "rejected")})
                else:
                    rows.append(rendered(tokenizer, row))
            results.append({"rows": rows})
    print("\n" + json.dumps({"datasets": results}))


if __name__ == "__main__":
    main()
