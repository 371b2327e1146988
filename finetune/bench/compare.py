"""What the planner predicts for the very slice and configuration a benchmark step ran, and the ratios.

The planner (`finetune.planner`) is asked about the slice as it is: its own config.json values (so the parameter
counts come from the slice built on the meta device), one GPU, no ZeRO partitioning, micro-batch 1, the measured
sequence length, method and gradient checkpointing. Memory is compared in the allocator's view: the planner's
total less its fixed 3 GiB for the CUDA context and NCCL buffers, which `torch.cuda.max_memory_allocated` never
sees. Speed is the planner's tokens/s range and its FLOPs per token, which also give the measured MFU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune.frameworks.setup import LoraSpec, TrainingSetup
from finetune.planner.memory import FIXED_OVERHEAD, GIB, PlanInputs, estimate
from finetune.planner.params import ModelShape, count_params

# allocated once, whatever the sequence length
STATIC_TERMS = ("weights", "grads", "optimizer", "gathered", "expert_deltas")
NOMINAL_GPU = "h100-80gb"  # the planner's card for memory capacity when the device is not in its catalog


@dataclass(frozen=True)
class Planned:
    memory_bytes: float  # allocator view: planner total less the fixed CUDA context / NCCL overhead
    static_bytes: float
    dynamic_bytes: float  # activations + logits + their 10 % overhead
    terms_bytes: dict[str, float]
    total_params: int
    trainable_params: int
    active_params: int
    flops_per_token: float
    tokens_per_s: tuple[float, float] | None
    mfu_range: tuple[float, float] | None
    gpu: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_bytes": round(self.memory_bytes),
            "memory_gib": round(self.memory_bytes / GIB, 3),
            "static_bytes": round(self.static_bytes),
            "dynamic_bytes": round(self.dynamic_bytes),
            "terms_bytes": {k: round(v) for k, v in self.terms_bytes.items()},
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "active_params": self.active_params,
            "flops_per_token": self.flops_per_token,
            "tokens_per_s": list(self.tokens_per_s) if self.tokens_per_s else None,
            "mfu_range": list(self.mfu_range) if self.mfu_range else None,
            "gpu": self.gpu,
        }


def lora_spec(rank: int, targets: tuple[str, ...]) -> LoraSpec:
    return LoraSpec(rank=rank, target_modules=tuple(targets))


def slice_inputs(
    config: dict[str, Any],
    *,
    method: str,
    checkpointing: bool,
    seq_len: int,
    micro_batch: int = 1,
    lora: LoraSpec | None = None,
) -> tuple[PlanInputs, int]:
    """The planner's inputs for one single-GPU step of the slice, and its active parameters per token."""
    setup = TrainingSetup(
        framework="bench",
        engine="deepspeed",  # one process, no ZeRO stage: nothing is partitioned, nothing gathered
        method="full" if method == "full" else "lora",
        lora=lora if method == "lora" else None,
        seq_len=seq_len,
        micro_batch=micro_batch,
        grad_accum=1,
        checkpointing=checkpointing,
    )
    counts = count_params(config, setup.lora)
    inputs = PlanInputs.of(setup, ModelShape.from_config(config), counts, gpus=1, gpus_per_node=1)
    return inputs, counts.active_per_token


def gpu_key_for(device_name: str) -> str | None:
    """The planner's catalog key for a device name as torch reports it ('NVIDIA H100 80GB HBM3'), or None."""
    from finetune.planner.gpus import CATALOG

    name = device_name.upper()
    for marker, key in (("H200", "h200"), ("H100", "h100-80gb"), ("H20", "h20-96gb"), ("A100", "a100-80gb")):
        if marker in name and key in CATALOG:
            return key
    return None


def planned(
    config: dict[str, Any],
    *,
    method: str,
    checkpointing: bool,
    seq_len: int,
    micro_batch: int = 1,
    lora: LoraSpec | None = None,
    gpu_key: str | None = None,
) -> Planned:
    from finetune.planner.gpus import get_gpu
    from finetune.planner.throughput import estimate_throughput, flops_per_token

    inputs, active = slice_inputs(
        config, method=method, checkpointing=checkpointing, seq_len=seq_len, micro_batch=micro_batch, lora=lora
    )
    card = get_gpu(gpu_key or NOMINAL_GPU)
    memory = estimate(inputs, card.memory_gib * GIB, reserve=1.0)
    terms = {t: getattr(memory, t) for t in memory.TERMS}
    static = sum(terms[t] for t in STATIC_TERMS)
    speed = estimate_throughput(inputs, card, active) if gpu_key else None
    return Planned(
        memory_bytes=memory.total - FIXED_OVERHEAD,
        static_bytes=static,
        dynamic_bytes=memory.dynamic,
        terms_bytes=terms,
        total_params=inputs.total_params,
        trainable_params=inputs.trainable_params,
        active_params=active,
        flops_per_token=flops_per_token(inputs, active),
        tokens_per_s=speed.tokens_per_s if speed else None,
        mfu_range=speed.mfu if speed else None,
        gpu=gpu_key,
    )


def ratios(measured: dict[str, Any], plan: dict[str, Any]) -> dict[str, float | None]:
    """measured / planned for memory, and measured tokens/s against the planner's range (low and high)."""
    out: dict[str, float | None] = {"memory": None, "tokens_per_s_vs_low": None, "tokens_per_s_vs_high": None}
    peak, planned_bytes = measured.get("peak_memory_bytes"), plan.get("memory_bytes")
    if peak is not None and planned_bytes:  # a CPU peak above the floor may be 0: a ratio of 0, not none
        out["memory"] = peak / planned_bytes
    rate, planned_rate = measured.get("tokens_per_s"), plan.get("tokens_per_s")
    if rate and planned_rate:
        out["tokens_per_s_vs_low"] = rate / planned_rate[0]
        out["tokens_per_s_vs_high"] = rate / planned_rate[1]
    return out


def replan(record: dict[str, Any]) -> dict[str, Any]:
    """The record with `planned` and `ratios` recomputed by the planner as it is now: after the planner's
    coefficients change, old measurements re-check it without a GPU."""
    if record.get("kind") != "train_step" or "planned" not in record:  # a budget placeholder has no plan
        return record
    from finetune.bench.slice import make_slice

    s, c = record["slice"], record["config"]
    piece = make_slice(s["model"], s["layers"], tiny=s["tiny"], dense=s["dense_layers"])
    lora = c.get("lora")
    plan = planned(
        piece.config,
        method=c["method"],
        checkpointing=c["checkpointing"],
        seq_len=c["seq_len"],
        micro_batch=c["micro_batch"],
        lora=lora_spec(lora["rank"], tuple(lora["targets"])) if lora else None,
        gpu_key=record.get("planner_gpu"),
    ).to_json()
    updated = {**record, "planned": plan}
    if record.get("metrics"):
        updated["ratios"] = ratios(record["metrics"], plan)
    return updated
