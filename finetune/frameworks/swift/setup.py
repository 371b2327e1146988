"""ms-swift 4.6 keys, with its defaults, as a `TrainingSetup`: Hugging Face trainer (DeepSpeed) or Megatron-SWIFT."""

from __future__ import annotations

from typing import Any

from finetune.errors import FinetuneError
from finetune.frameworks.setup import (
    ROUTED_EXPERT_PARAMETERS,
    DeepSpeedSettings,
    LoraSpec,
    TrainingSetup,
    deepspeed_settings,
    split_names,
)

# ms-swift's bundled DeepSpeed configs, by the names `deepspeed:` accepts: (stage, params, optimizer offloaded to)
DEEPSPEED_NAMES = {
    "zero0": (0, None, None),
    "zero1": (1, None, None),
    "zero2": (2, None, None),
    "zero3": (3, None, None),
    "zero2_offload": (2, None, "cpu"),
    "zero3_offload": (3, "cpu", "cpu"),
}
# keys only Megatron-SWIFT (`megatron sft` / `megatron rlhf`) has
MEGATRON_KEYS = (
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "expert_model_parallel_size",
    "expert_tensor_parallel_size",
    "context_parallel_size",
    "use_distributed_optimizer",
    "micro_batch_size",
    "global_batch_size",
    "recompute_granularity",
    "cross_entropy_loss_fusion",
)
RL_WITH_REFERENCE = ("dpo", "kto", "ppo", "grpo")
PAIRED = ("dpo", "kto")  # chosen and rejected run in one forward pass
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")


def is_megatron(config: dict[str, Any]) -> bool:
    return any(key in config for key in MEGATRON_KEYS)


def _lora(config: dict[str, Any], targets: tuple[str, ...], megatron: bool, mtp_layers: int) -> LoraSpec:
    common = {
        "rank": int(config.get("lora_rank", 8)),
        "use_dora": bool(config.get("use_dora", False)),
        "modules_to_save": split_names(config.get("modules_to_save")),
    }
    if megatron:
        return LoraSpec(target_modules=targets, layout="megatron", mtp_layers=mtp_layers, **common)
    # Observed with ms-swift 4.6 (transformers 5.19, PEFT 0.20) on glm4_moe: `all-linear` wraps attention and the
    # fused routed experts, and any gate_proj / up_proj / down_proj target lands on the fused routed experts,
    # leaving the dense MLP and the shared experts unadapted. The planner counts what that environment builds.
    parameters = split_names(config.get("target_parameters"))  # PEFT's fused-parameter targets, as written
    mlp = [t for t in targets if t in ("all-linear", *MLP_NAMES)]
    if mlp:
        kept = tuple(t for t in targets if t not in ("all-linear", *MLP_NAMES))
        modules = tuple(dict.fromkeys((ATTENTION if "all-linear" in mlp else ()) + kept))
        parameters = tuple(dict.fromkeys((*ROUTED_EXPERT_PARAMETERS, *parameters)))
        return LoraSpec(target_modules=modules, target_parameters=parameters, **common)
    return LoraSpec(target_modules=targets, target_parameters=parameters, **common)


def _deepspeed(config: dict[str, Any], ds: dict[str, Any] | None) -> DeepSpeedSettings:
    if ds is not None:
        return deepspeed_settings(ds)
    value = config.get("deepspeed")
    if value is None:
        return DeepSpeedSettings()
    if isinstance(value, dict):
        return deepspeed_settings(value)
    if str(value) in DEEPSPEED_NAMES:
        stage, params, optimizer = DEEPSPEED_NAMES[str(value)]
        return DeepSpeedSettings(zero_stage=stage, offload_params=params, offload_optimizer=optimizer)
    raise FinetuneError(
        f"deepspeed: `{value}` is neither one of ms-swift's names "
        f"({', '.join(DEEPSPEED_NAMES)}) nor a DeepSpeed JSON the planner was given."
    )


def _megatron(config: dict[str, Any]) -> dict[str, Any]:
    """The Megatron-only part of a setup."""
    return {
        "engine": "megatron",
        "micro_batch": int(config.get("micro_batch_size", 1)),
        "grad_accum": 1,  # follows from global_batch and the GPU count: TrainingSetup.grad_accum_on
        "global_batch": int(config.get("global_batch_size", 16)),
        "checkpointing": config.get("recompute_granularity", "selective") == "full",  # selective keeps layers
        "tp": int(config.get("tensor_model_parallel_size", 1)),
        "pp": int(config.get("pipeline_model_parallel_size", 1)),
        "ep": int(config.get("expert_model_parallel_size", 1)),
        "etp": int(config.get("expert_tensor_parallel_size", 1)),
        "cp": int(config.get("context_parallel_size", 1)),
        "sequence_parallel": bool(config.get("sequence_parallel", False)),
        "distributed_optimizer": bool(config.get("use_distributed_optimizer", True)),
        "logits_fused": bool(config.get("cross_entropy_loss_fusion", True)),
    }


def _huggingface(config: dict[str, Any], ds: dict[str, Any] | None) -> dict[str, Any]:
    """The Hugging Face trainer's part of a setup (DeepSpeed, Ulysses sequence parallelism)."""
    return {
        "engine": "deepspeed",
        "micro_batch": int(config.get("per_device_train_batch_size", 1)),
        "grad_accum": int(config.get("gradient_accumulation_steps") or 1),
        "checkpointing": bool(config.get("gradient_checkpointing", True)),
        "deepspeed": _deepspeed(config, ds),
        "cp": int(config.get("sequence_parallel_size", 1)),  # Ulysses sequence parallelism splits the sequence
        "logits_fused": bool(config.get("use_liger_kernel", False)),
    }


def swift_setup(
    config: dict[str, Any], ds: dict[str, Any] | None = None, *, max_positions: int, megatron: bool | None = None
) -> TrainingSetup:
    """Megatron-SWIFT when `megatron` (default: when a Megatron-only key is set); `max_positions` is the model's
    context, ms-swift's sequence cap when the config sets none."""
    megatron = is_megatron(config) if megatron is None else megatron
    kind = config.get("tuner_type", config.get("train_type", "full" if megatron else "lora"))
    method = "full" if kind == "full" else "lora"
    mtp = int(config.get("mtp_num_layers") or 0) if megatron else 0
    rlhf = config.get("rlhf_type")
    beta = config.get("beta")
    no_kl = rlhf == "grpo" and beta is not None and float(beta) == 0  # GRPO without its KL term needs no reference
    colocate = bool(config.get("use_vllm")) and config.get("vllm_mode", "colocate") == "colocate"
    sleep_level = int(config.get("sleep_level", 0)) if colocate else 0
    notes = []
    if config.get("use_vllm") and not colocate:
        notes.append("vLLM runs in server mode on its own GPUs: not counted here")
    seq_len = int(config.get("max_length") or max_positions)
    logits_tokens = None
    if rlhf == "grpo":  # max_length bounds the prompt; the policy runs on prompt + completion, scores the completion
        logits_tokens = int(config.get("max_completion_length", 512))
        seq_len += logits_tokens
        notes.append("throughput counts the training passes only, not the rollouts' generation time")
    targets = split_names(config.get("target_modules", ["all-linear"])) if method == "lora" else ()
    return TrainingSetup(
        framework="swift",
        method=method,
        lora=_lora(config, targets, megatron, mtp) if method == "lora" else None,
        seq_len=seq_len,
        sequences_per_sample=2 if rlhf in PAIRED else 1,
        logits_tokens=logits_tokens,
        reference_model=bool(config.get("ref_model")) or (method == "full" and rlhf in RL_WITH_REFERENCE and not no_kl),
        rollout_gpu_fraction=float(config.get("vllm_gpu_memory_utilization", 0.9)) if colocate else 0.0,
        rollout_sleeps=sleep_level > 0,
        rollout_weights_to_host=sleep_level == 1,
        rollout_tp=int(config.get("vllm_tensor_parallel_size", 1)),
        rollout_max_model_len=int(config.get("vllm_max_model_len") or 0) or None,
        trainer_offloaded_while_rolling_out=colocate and bool(config.get("offload_model", False)),
        mtp_layers=mtp,
        checkpoint_optimizer=all(
            str(config.get(k, False)).lower() != "true" for k in ("save_only_model", "no_save_optim")
        ),
        lora_targets=targets,
        lora_alpha=int(config.get("lora_alpha", 32)) if method == "lora" else None,
        notes=tuple(notes),
        **(_megatron(config) if megatron else _huggingface(config, ds)),
    )
