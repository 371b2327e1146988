"""Runs inside the ms-swift environment under torchrun: `python -m finetune.frameworks.trainer.swift.entry sft CONFIG`.

The YAML becomes flags through ms-swift's own config reader, then ms-swift's own command module runs as if it
had been started as `swift sft CONFIG`.
"""

from __future__ import annotations

import os
import runpy
import sys

from finetune.frameworks.trainer.known_warnings import filter_known_warnings
from finetune.frameworks.trainer.sigterm import unblock_sigterm

COMMAND_MODULES = {
    ("sft",): "swift.cli.sft",
    ("rlhf",): "swift.cli.rlhf",
    ("megatron", "sft"): "swift.cli._megatron.sft",
    ("megatron", "rlhf"): "swift.cli._megatron.rlhf",
}


def _gloo_for_deepspeed_without_gpu() -> None:
    """Without a GPU, accelerate 1.15 finds no process-group backend for DeepSpeed and counts a world of one
    (DeepSpeed's batch-size check then fails); name gloo for it. Does nothing where CUDA is available."""
    import torch

    if torch.cuda.is_available():
        return
    from accelerate.state import PartialState

    original = PartialState._prepare_backend

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        found, kind = original(self, cpu, sagemaker_dp, backend)
        return found or "gloo", kind

    PartialState._prepare_backend = prepare_backend


def _cpu_data_parallel(flags: list[str]) -> None:
    """Without a GPU and without DeepSpeed, ms-swift's trainer builds no process group unless `use_cpu` is set:
    each rank then trains alone (no gradients are averaged), so two processes do not train as one with twice the
    batch. Ask for CPU data parallelism there (DeepSpeed makes its own group; a GPU run is untouched)."""
    import torch

    if torch.cuda.is_available() or "--deepspeed" in flags or "--use_cpu" in flags:
        return
    flags += ["--use_cpu", "true"]


def _register_callbacks(flags: list[str]) -> None:
    """ms-swift builds trainer callbacks by name from its `callbacks_map` (calling `cls(args, trainer)`): register
    each of the repository's callbacks under a name of its own and ask for them all."""
    if "megatron" in sys.argv[1:2]:
        return  # Megatron-SWIFT does not use the Hugging Face trainer
    from swift.callbacks import callbacks_map

    from finetune.frameworks.trainer.callbacks import trainer_callbacks

    names = []
    for index, callback in enumerate(trainer_callbacks()):
        name = f"finetune_{index}_{type(callback).__name__}"
        callbacks_map[name] = lambda args, trainer, callback=callback: callback
        names.append(name)
    if "--callbacks" in flags:
        position = flags.index("--callbacks") + 1
        flags[position:position] = names
    else:
        flags += ["--callbacks", *names]


def _run_name_from_environment(flags: list[str]) -> None:
    """ms-swift names a run after its output folder when the config names none, and that name would override
    WANDB_NAME; the launcher keeps the wandb run name in WANDB_NAME (the config must be the same on every node
    and every resume), so pass it on."""
    if os.environ.get("WANDB_NAME") and "--run_name" not in flags:
        flags += ["--run_name", os.environ["WANDB_NAME"]]


def _flag_value(flags: list[str], flag: str) -> str | None:
    return flags[flags.index(flag) + 1].lower() if flag in flags[:-1] else None


def main() -> None:
    filter_known_warnings()
    args = sys.argv[1:]
    command = tuple(args[:-1])
    if command not in COMMAND_MODULES:
        raise SystemExit(f"usage: swift_entry {{sft|rlhf|megatron sft|megatron rlhf}} CONFIG (got {args})")
    from swift.cli.main import parse_yaml_args

    flags = [args[-1]]
    parse_yaml_args(flags)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if "--deepspeed" in flags:
            _gloo_for_deepspeed_without_gpu()
        _cpu_data_parallel(flags)
    _register_callbacks(flags)
    unblock_sigterm()  # Megatron-SWIFT has no graceful stop: SIGTERM ends it as it would without the launcher
    _run_name_from_environment(flags)
    if _flag_value(flags, "--use_vllm") == "true":
        from finetune.frameworks.trainer.swift.vllm_cpu import prepare_vllm_on_cpu

        prepare_vllm_on_cpu()
    from finetune.frameworks.trainer.expert_lora import gather_experts_while_wrapping
    from finetune.frameworks.trainer.swift.glm47 import write_glm47_format
    from finetune.frameworks.trainer.swift.header_newline import train_header_newline
    from finetune.frameworks.trainer.swift.history_reasoning import keep_tool_loop_reasoning
    from finetune.frameworks.trainer.swift.tool_schemas import keep_json_text_tool_schemas

    gather_experts_while_wrapping()  # target_parameters (the routed experts) under ZeRO-3
    train_header_newline()
    keep_tool_loop_reasoning()
    keep_json_text_tool_schemas()
    write_glm47_format()
    sys.argv = [COMMAND_MODULES[command], *flags]
    runpy.run_module(COMMAND_MODULES[command], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
