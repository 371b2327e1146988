"""Runs inside the LLaMA-Factory environment: checks configs with LLaMA-Factory's parser.

Reads [{"command": "train", "config": {...}}, ...] on stdin (several configs, one slow import) and prints one JSON
line, a list with one verdict per config.

The config goes through the same HfArgumentParser that `llamafactory-cli train` builds, as command-line
strings, so types and choices are checked the way a real launch checks them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys

from finetune.frameworks.trainer.deepspeed_check import check_deepspeed_file


def to_argv(config: dict) -> list[str]:
    argv = []
    for key, value in config.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, bool):
            argv.append("true" if value else "false")
        elif isinstance(value, list):
            argv.extend(str(v) for v in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value))
    return argv


def check(config: dict) -> dict:
    import torch
    import transformers.training_args as training_args
    from llamafactory.hparams.parser import _TRAIN_ARGS
    from transformers import HfArgumentParser

    warnings = []
    if not torch.cuda.is_available():
        # bf16 support is a property of the GPU this config will run on, not of this machine
        training_args.is_torch_bf16_gpu_available = lambda: True
        if config.get("bf16") or config.get("pure_bf16"):
            warnings.append("no GPU here: bf16 support was not checked")
    valid = sorted({f.name for cls in _TRAIN_ARGS for f in dataclasses.fields(cls) if f.init})
    unknown = [key for key in config if key not in valid]
    errors = []
    if not unknown:
        parser = HfArgumentParser(_TRAIN_ARGS)
        parser.prog = "LLaMA-Factory"
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                *_, rest = parser.parse_args_into_dataclasses(args=to_argv(config), return_remaining_strings=True)
            if rest:
                errors.append(f"values the parser did not use: {rest}")
        except SystemExit:
            errors.append(err.getvalue().strip().splitlines()[-1])
        except Exception as exc:  # the dataclasses' own __post_init__ checks
            errors.append(f"{type(exc).__name__}: {exc}")
    errors.extend(
        check_deepspeed_file(
            config.get("deepspeed"),
            int(config.get("per_device_train_batch_size", 8)),
            int(config.get("gradient_accumulation_steps", 1)),
        )
    )
    return {"unknown_keys": unknown, "errors": errors, "valid_keys": valid, "warnings": warnings}


def main() -> None:
    request = json.loads(sys.stdin.read())  # LLaMA-Factory's train is the only command
    with contextlib.redirect_stdout(sys.stderr):
        verdicts = [check(item["config"]) for item in request]
    print(json.dumps(verdicts))


if __name__ == "__main__":
    main()
