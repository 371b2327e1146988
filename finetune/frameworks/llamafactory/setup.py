"""LLaMA-Factory 0.9.5 keys, with its defaults, as a `TrainingSetup` (the Hugging Face trainer, with DeepSpeed)."""

from __future__ import annotations

from typing import Any

from finetune.errors import FinetuneError
from finetune.frameworks.setup import LoraSpec, TrainingSetup, deepspeed_settings, split_names

PAIRED_STAGES = ("dpo", "kto")  # chosen and rejected run in one forward pass


def llamafactory_setup(
    config: dict[str, Any], ds: dict[str, Any] | None = None, *, target_parameters: tuple[str, ...] = ()
) -> TrainingSetup:
    """`ds` is the DeepSpeed JSON the config's `deepspeed` key names (None: no DeepSpeed); `target_parameters` the
    fused parameters the repository's hook hands PEFT beside LLaMA-Factory's own targets (the routed experts)."""
    kind = config.get("finetuning_type", "lora")
    if kind not in ("lora", "full"):
        raise FinetuneError(f"finetuning_type `{kind}`: the planner models `lora` and `full`.")
    stage = config.get("stage", "sft")
    lora, targets, rank = None, (), int(config.get("lora_rank", 8))
    if kind == "lora":
        targets = split_names(config.get("lora_target", "all"))
        lora = LoraSpec(
            rank=rank,
            target_modules=targets or ("all",),
            target_parameters=target_parameters,
            modules_to_save=split_names(config.get("additional_target")),
            use_dora=bool(config.get("use_dora", False)),
        )
    # DPO / KTO with full fine-tuning keep a frozen copy of the model; a LoRA's reference is the base model
    reference_free = config.get("pref_loss", "sigmoid") in ("orpo", "simpo")
    notes = ("PPO's reward and value models are not modelled",) if stage == "ppo" else ()
    return TrainingSetup(
        framework="llamafactory",
        engine="deepspeed",
        checkpoint_optimizer=str(config.get("save_only_model", False)).lower() != "true",
        method=kind,
        lora=lora,
        seq_len=int(config.get("cutoff_len", 2048)),
        micro_batch=int(config.get("per_device_train_batch_size", 8)),
        sequences_per_sample=2 if stage in PAIRED_STAGES else 1,
        grad_accum=int(config.get("gradient_accumulation_steps", 1)),
        checkpointing=not config.get("disable_gradient_checkpointing", False),  # on unless told otherwise
        deepspeed=deepspeed_settings(ds),
        logits_fused=bool(config.get("enable_liger_kernel", False)),
        reference_model=stage in PAIRED_STAGES and kind == "full" and not reference_free,
        lora_targets=targets,
        lora_alpha=int(config.get("lora_alpha") or 2 * rank) if lora else None,
        notes=notes,
    )
