"""What a rendered framework config means for memory: engine, parallel layout, LoRA, sequence, RL extras.

One small function per framework maps its keys (with the framework's own defaults) onto a `TrainingSetup`;
the planner then adds the model's parameter counts and the cluster. Keys are read from the config exactly as
`finetune launch` renders it, so the plan and the launch cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from finetune.errors import FinetuneError
from finetune.planner.params import ROUTED_EXPERT_PARAMETERS, LoraSpec

# ms-swift's bundled DeepSpeed configs, by the names `deepspeed:` accepts
SWIFT_DEEPSPEED_NAMES = {
    "zero0": (0, None, None),
    "zero1": (1, None, None),
    "zero2": (2, None, None),
    "zero3": (3, None, None),
    "zero2_offload": (2, None, "cpu"),
    "zero3_offload": (3, "cpu", "cpu"),
}
# keys only Megatron-SWIFT (`megatron sft` / `megatron rlhf`) has
MEGATRON_KEYS = (
    "tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size",
    "expert_tensor_parallel_size", "context_parallel_size", "use_distributed_optimizer", "micro_batch_size",
    "global_batch_size", "recompute_granularity", "cross_entropy_loss_fusion",
)  # fmt: skip
RL_WITH_REFERENCE = ("dpo", "kto", "ppo", "grpo")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DeepSpeedSettings:
    zero_stage: int = 0
    offload_params: Literal["cpu", "nvme"] | None = None
    offload_optimizer: Literal["cpu", "nvme"] | None = None
    param_buffer_bytes: int = 0  # pinned host buffers for NVMe parameter swapping, per GPU
    optimizer_buffer_count: int = 0  # ... and for NVMe optimizer swapping (times the sub-group size)
    sub_group_size: int = 1_000_000_000


@dataclass(frozen=True)
class TrainingSetup:
    """A recipe's training, as the memory model sees it (the cluster and the parameter counts come later)."""

    framework: str
    engine: Literal["deepspeed", "megatron"]
    method: Literal["lora", "full"]
    lora: LoraSpec | None
    seq_len: int
    micro_batch: int
    grad_accum: int
    checkpointing: bool
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    tp: int = 1
    pp: int = 1
    ep: int = 1
    etp: int = 1
    cp: int = 1
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    logits_fused: bool = False
    logits_tokens: int | None = None
    reference_model: bool = False
    rollout_gpu_fraction: float = 0.0
    rollout_sleeps: bool = False
    rollout_weights_to_host: bool = False
    rollout_tp: int = 1
    trainer_offloaded_while_rolling_out: bool = False
    mtp_layers: int = 0
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        if self.engine == "megatron":
            layout = " ".join(f"{k}{v}" for k, v in (("TP", self.tp), ("PP", self.pp), ("EP", self.ep),
                                                      ("ETP", self.etp), ("CP", self.cp)) if v > 1)  # fmt: skip
            optimizer = ", distributed optimizer" if self.distributed_optimizer else ""
            text = f"Megatron {layout or 'data parallel'}{optimizer}"
        else:
            ds = self.deepspeed
            text = f"DeepSpeed ZeRO-{ds.zero_stage}" if ds.zero_stage else "data parallel (no ZeRO)"
            places = (("params", ds.offload_params), ("optimizer", ds.offload_optimizer))
            moved = [f"{what} -> {where}" for what, where in places if where]
            if moved:
                text += f" (offload {', '.join(moved)})"
        method = f"LoRA rank {self.lora.rank}" if self.lora else "full"
        return f"{method}, {text}"


def deepspeed_settings(ds: dict[str, Any] | None) -> DeepSpeedSettings:
    """Stage and offload targets from a DeepSpeed JSON (None: no DeepSpeed)."""
    if not ds:
        return DeepSpeedSettings()
    zero = ds.get("zero_optimization") or {}
    stage = int(zero.get("stage", 0))

    def device(key: str) -> Literal["cpu", "nvme"] | None:
        value = (zero.get(key) or {}).get("device", "none")
        return value if value in ("cpu", "nvme") else None

    offload_params = device("offload_param") if stage >= 3 else None  # only ZeRO-3 offloads parameters
    param_cfg, opt_cfg = zero.get("offload_param") or {}, zero.get("offload_optimizer") or {}
    param_buffers = int(param_cfg.get("buffer_count", 5)) * int(float(param_cfg.get("buffer_size", 1e8))) * 2
    sub_group = zero.get("sub_group_size", 1e9)
    return DeepSpeedSettings(
        zero_stage=stage,
        offload_params=offload_params,
        offload_optimizer=device("offload_optimizer"),
        param_buffer_bytes=param_buffers if offload_params == "nvme" else 0,
        optimizer_buffer_count=int(opt_cfg.get("buffer_count", 4)) if device("offload_optimizer") == "nvme" else 0,
        sub_group_size=int(float(sub_group)) if not isinstance(sub_group, str) else 1_000_000_000,
    )


def _split(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


# -- LLaMA-Factory ------------------------------------------------------------------------------------------------


def llamafactory_setup(config: dict[str, Any], ds: dict[str, Any] | None, shape) -> TrainingSetup:
    """LLaMA-Factory 0.9.5: `shape` is the framework's own TrainingShape of the same config."""
    kind = config.get("finetuning_type", "lora")
    if kind not in ("lora", "full"):
        raise FinetuneError(f"finetuning_type `{kind}`: the planner models `lora` and `full`.")
    stage = config.get("stage", "sft")
    lora = None
    if kind == "lora":
        lora = LoraSpec(
            rank=shape.lora_rank,
            target_modules=shape.lora_targets or ("all",),
            modules_to_save=_split(config.get("additional_target")),
            use_dora=bool(config.get("use_dora", False)),
        )
    notes = []
    # DPO / KTO with full fine-tuning keep a frozen copy of the model; a LoRA's reference is the base model
    reference_free = config.get("pref_loss", "sigmoid") in ("orpo", "simpo")
    reference = stage in ("dpo", "kto") and kind == "full" and not reference_free
    if stage == "ppo":
        notes.append("PPO's reward and value models are not modelled")
    return TrainingSetup(
        framework="llamafactory",
        engine="deepspeed",
        method=kind,
        lora=lora,
        seq_len=shape.seq_len,
        micro_batch=shape.micro_batch * (2 if stage in ("dpo", "kto") else 1),  # chosen + rejected
        grad_accum=shape.grad_accum,
        checkpointing=shape.gradient_checkpointing,
        deepspeed=deepspeed_settings(ds),
        logits_fused=bool(config.get("enable_liger_kernel", False)),
        reference_model=reference,
        notes=tuple(notes),
    )


# -- ms-swift (Hugging Face trainer or Megatron) ----------------------------------------------------------------------


def is_megatron(config: dict[str, Any]) -> bool:
    return any(key in config for key in MEGATRON_KEYS)


def _swift_lora(config: dict[str, Any], megatron: bool, mtp_layers: int) -> LoraSpec:
    rank = int(config.get("lora_rank", 8))
    targets = _split(config.get("target_modules", ["all-linear"]))
    common = {"rank": rank, "use_dora": bool(config.get("use_dora", False)),
              "modules_to_save": _split(config.get("modules_to_save"))}  # fmt: skip
    if megatron:
        return LoraSpec(target_modules=targets, layout="megatron", mtp_layers=mtp_layers, **common)
    # Observed with ms-swift 4.6 (transformers 5.19, PEFT 0.20) on glm4_moe: `all-linear` wraps attention and the
    # fused routed experts, and any gate_proj / up_proj / down_proj target lands on the fused routed experts,
    # leaving the dense MLP and the shared experts unadapted. The planner counts what that environment builds.
    mlp = [t for t in targets if t in ("all-linear", *MLP_NAMES)]
    if mlp:
        kept = tuple(t for t in targets if t not in ("all-linear", *MLP_NAMES))
        modules = tuple(dict.fromkeys((ATTENTION if "all-linear" in mlp else ()) + kept))
        return LoraSpec(target_modules=modules, target_parameters=ROUTED_EXPERT_PARAMETERS, **common)
    return LoraSpec(target_modules=targets, **common)


def _swift_deepspeed(config: dict[str, Any], ds: dict[str, Any] | None) -> DeepSpeedSettings:
    if ds is not None:
        return deepspeed_settings(ds)
    value = config.get("deepspeed")
    if value is None:
        return DeepSpeedSettings()
    if isinstance(value, dict):
        return deepspeed_settings(value)
    if str(value) in SWIFT_DEEPSPEED_NAMES:
        stage, params, optimizer = SWIFT_DEEPSPEED_NAMES[str(value)]
        return DeepSpeedSettings(zero_stage=stage, offload_params=params, offload_optimizer=optimizer)
    raise FinetuneError(f"deepspeed: `{value}` is neither one of ms-swift's names "
                        f"({', '.join(SWIFT_DEEPSPEED_NAMES)}) nor a DeepSpeed JSON the planner was given.")


def swift_setup(
    config: dict[str, Any], ds: dict[str, Any] | None = None, *, max_positions: int, megatron: bool | None = None
) -> TrainingSetup:
    """ms-swift 4.6 keys and defaults; Megatron-SWIFT when `megatron` (default: when a Megatron-only key is set)."""
    megatron = is_megatron(config) if megatron is None else megatron
    kind = config.get("tuner_type", config.get("train_type", "full" if megatron else "lora"))
    method = "full" if kind == "full" else "lora"
    mtp = int(config.get("mtp_num_layers") or 0) if megatron else 0
    rlhf = config.get("rlhf_type")
    beta = config.get("beta")
    no_kl = rlhf == "grpo" and beta is not None and float(beta) == 0  # GRPO without its KL term needs no reference
    reference = bool(config.get("ref_model")) or (method == "full" and rlhf in RL_WITH_REFERENCE and not no_kl)
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
    common = {
        "framework": "swift",
        "method": method,
        "lora": _swift_lora(config, megatron, mtp) if method == "lora" else None,
        "seq_len": seq_len,
        "logits_tokens": logits_tokens,
        "reference_model": reference,
        "rollout_gpu_fraction": float(config.get("vllm_gpu_memory_utilization", 0.9)) if colocate else 0.0,
        "rollout_sleeps": sleep_level > 0,
        "rollout_weights_to_host": sleep_level == 1,
        "rollout_tp": int(config.get("vllm_tensor_parallel_size", 1)),
        "trainer_offloaded_while_rolling_out": colocate and bool(config.get("offload_model", False)),
        "notes": tuple(notes),
    }
    pair = 2 if rlhf in ("dpo", "kto") else 1  # chosen + rejected in one forward
    if megatron:
        tp = int(config.get("tensor_model_parallel_size", 1))
        pp = int(config.get("pipeline_model_parallel_size", 1))
        cp = int(config.get("context_parallel_size", 1))
        micro = int(config.get("micro_batch_size", 1))
        return TrainingSetup(
            engine="megatron",
            micro_batch=micro * pair,
            grad_accum=1,  # global_batch_size / (micro * data-parallel): see megatron_grad_accum, needs the GPU count
            checkpointing=config.get("recompute_granularity", "selective") == "full",
            tp=tp,
            pp=pp,
            ep=int(config.get("expert_model_parallel_size", 1)),
            etp=int(config.get("expert_tensor_parallel_size", 1)),
            cp=cp,
            sequence_parallel=bool(config.get("sequence_parallel", False)),
            distributed_optimizer=bool(config.get("use_distributed_optimizer", True)),
            logits_fused=bool(config.get("cross_entropy_loss_fusion", True)),
            mtp_layers=mtp,
            **common,
        )
    return TrainingSetup(
        engine="deepspeed",
        micro_batch=int(config.get("per_device_train_batch_size", 1)) * pair,
        grad_accum=int(config.get("gradient_accumulation_steps") or 1),
        checkpointing=bool(config.get("gradient_checkpointing", True)),
        deepspeed=_swift_deepspeed(config, ds),
        cp=int(config.get("sequence_parallel_size", 1)),  # Ulysses sequence parallelism splits the sequence
        logits_fused=bool(config.get("use_liger_kernel", False)),
        **common,
    )


def megatron_grad_accum(config: dict[str, Any], setup: TrainingSetup, gpus: int) -> int:
    """Megatron's micro-batches per step: global_batch_size / (micro_batch_size * data-parallel size)."""
    data_parallel = max(1, gpus // (setup.tp * setup.pp * setup.cp))
    micro = int(config.get("micro_batch_size", 1))
    return max(1, int(config.get("global_batch_size", 16)) // (micro * data_parallel))

