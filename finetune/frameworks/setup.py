"""One training layout: what a rendered framework config trains and how it is parallelised, as one frozen type.

Every framework adapter turns its config into a `TrainingSetup` (`Framework.training_setup`; the key-by-key mapping
lives in `llamafactory/setup.py` and `swift/setup.py`); the planner, the recipe headers and the benchmark read
it and never the config itself, so they cannot disagree about a key or its default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Offload = Literal["cpu", "nvme"] | None

# PEFT's fused-parameter targets for the routed experts under transformers 5 (one tensor for all experts)
ROUTED_EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


@dataclass(frozen=True)
class LoraSpec:
    """What a LoRA adapts, as the framework hands it to PEFT (layout `peft`) or to Megatron (layout `megatron`).

    `target_modules` are PEFT's suffix names (`q_proj`, ...) or Megatron's (`linear_qkv`, ..., `all-linear`);
    `target_parameters` are PEFT's fused-parameter targets (the routed experts under transformers 5).
    The target `all` is LLaMA-Factory's: every module whose class is a Linear, except the output head.
    Parameter counts are cached by these fields: a new field changes every cache key.
    """

    rank: int
    target_modules: tuple[str, ...]
    target_parameters: tuple[str, ...] = ()
    modules_to_save: tuple[str, ...] = ()
    use_dora: bool = False
    layout: Literal["peft", "megatron"] = "peft"
    mtp_layers: int = 0  # Megatron trains the MTP layer(s) when asked to (`mtp_num_layers`)


@dataclass(frozen=True)
class DeepSpeedSettings:
    """What memory depends on in a DeepSpeed JSON or an ms-swift preset: the ZeRO stage and where states go."""

    zero_stage: int = 0
    offload_params: Offload = None
    offload_optimizer: Offload = None
    pinned_offload: bool = False  # states offloaded to CPU memory are pinned (page-locked: the kernel cannot page them)
    param_buffer_bytes: int = 0  # pinned host buffers for NVMe parameter swapping, per GPU
    optimizer_buffer_count: int = 0  # ... and for NVMe optimizer swapping (times the sub-group size)
    sub_group_size: int = 1_000_000_000
    source: str | None = None  # the JSON path or ms-swift preset name the recipe gave (None: no DeepSpeed)


@dataclass(frozen=True)
class TrainingSetup:
    """A recipe's training as its framework will run it (the cluster and the parameter counts come later).

    Figures are the config's own, with the framework's defaults filled in: `micro_batch` is per GPU as
    configured (a preference pair counts once; `sequences_per_sample` says how many sequences it runs), and
    `seq_len` is the longest sequence a forward pass sees (for GRPO the prompt plus the completion).
    """

    framework: str
    engine: Literal["deepspeed", "megatron"]
    method: Literal["lora", "full"]
    lora: LoraSpec | None
    seq_len: int
    micro_batch: int
    grad_accum: int
    checkpointing: bool
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    sequences_per_sample: int = 1  # 2 for DPO / KTO: chosen and rejected run in the same forward pass
    global_batch: int | None = None  # Megatron's global_batch_size: the accumulation then follows from the GPUs
    tp: int = 1
    pp: int = 1
    ep: int = 1
    etp: int = 1
    cp: int = 1
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    logits_fused: bool = False
    logits_tokens: int | None = None  # tokens per sequence that get logits (GRPO: the completion); None: all
    reference_model: bool = False  # a frozen copy of the policy (full-parameter DPO / KTO / GRPO with beta > 0)
    rollout_gpu_fraction: float = 0.0  # share of each GPU a colocated vLLM takes while generating
    rollout_sleeps: bool = False  # vLLM releases its memory while the trainer runs (sleep mode)
    rollout_weights_to_host: bool = False  # sleep level 1: vLLM's weights wait in host RAM
    rollout_tp: int = 1  # vLLM's tensor parallel size (its weights per GPU: 2P / rollout_tp)
    rollout_max_model_len: int | None = None  # vLLM's longest sequence (None: the training sequence length)
    trainer_offloaded_while_rolling_out: bool = False  # the trainer's states wait in host RAM while vLLM runs
    mtp_layers: int = 0
    checkpoint_optimizer: bool = True  # checkpoints keep the optimizer states (not save_only_model / no_save_optim)
    lora_targets: tuple[str, ...] = ()  # the LoRA target names as the config gives them (`lora` has PEFT's)
    lora_alpha: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def max_length(self) -> int:
        """The length the config caps: whole sequences, or GRPO's prompts (its completions: `logits_tokens`)."""
        return self.seq_len - (self.logits_tokens or 0)

    @property
    def sequences_per_micro_batch(self) -> int:
        return self.micro_batch * self.sequences_per_sample

    def data_parallel(self, gpus: int) -> int:
        """Data-parallel replicas on `gpus` GPUs: Megatron's model-parallel groups, or Ulysses' sequence groups."""
        model_parallel = self.tp * self.pp * self.cp if self.engine == "megatron" else self.cp
        return max(1, gpus // model_parallel)

    def grad_accum_on(self, gpus: int) -> int:
        """Micro-batches per optimizer step on `gpus` GPUs: Megatron divides its global batch over them."""
        if self.global_batch is None:
            return self.grad_accum
        return max(1, self.global_batch // (self.micro_batch * self.data_parallel(gpus)))

    def describe(self) -> str:
        if self.engine == "megatron":
            sizes = (("TP", self.tp), ("PP", self.pp), ("EP", self.ep), ("ETP", self.etp), ("CP", self.cp))
            layout = " ".join(f"{k}{v}" for k, v in sizes if v > 1)
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

    def device(key: str) -> Offload:
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
        pinned_offload=any(
            (zero.get(k) or {}).get("device") == "cpu" and (zero.get(k) or {}).get("pin_memory", False) is True
            for k in ("offload_param", "offload_optimizer")
        ),
        param_buffer_bytes=param_buffers if offload_params == "nvme" else 0,
        optimizer_buffer_count=int(opt_cfg.get("buffer_count", 4)) if device("offload_optimizer") == "nvme" else 0,
        sub_group_size=int(float(sub_group)) if not isinstance(sub_group, str) else 1_000_000_000,
    )


def split_names(value: Any) -> tuple[str, ...]:
    """Module names from a list or a comma-separated string (`q_proj,v_proj`); None gives none."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())
