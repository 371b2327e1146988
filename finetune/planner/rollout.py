"""Does a colocated vLLM fit the share of each GPU it is given? vLLM's own arithmetic, per GPU of its TP group.

vLLM takes `gpu_memory_utilization` x the card for itself. Inside that budget it loads its weights (bf16, every
weight split over its tensor-parallel group: 2P / TP; the MTP layer is not loaded), keeps its CUDA context,
CUDA graphs and the activations of its profiling pass (VLLM_OVERHEAD, an estimate), and gives the rest to the
KV cache. It refuses to start when that rest cannot hold one sequence of `max_model_len` tokens, and generates
fewer sequences at once than it is sent when the rest holds fewer. KV bytes per token and GPU are
2 (K and V) x layers x KV heads on the GPU (a TP group wider than the KV heads replicates them: at least one)
x head_dim x 2 (bf16).

One engine serves its TP group: ms-swift gathers the prompts of its TP ranks, each rank generating
micro-batch x accumulation completions per optimizer step (steps_per_generation defaults to the accumulation).
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.planner.memory import GIB, PlanInputs

VLLM_OVERHEAD = 4 * GIB  # CUDA context, CUDA graphs, sampler and profiling activations (estimate)
KV_BYTES = 2  # bf16 KV cache (vLLM's kv_cache_dtype "auto" for a bf16 model)


@dataclass(frozen=True)
class RolloutFit:
    budget: float  # bytes per GPU: gpu_memory_utilization x the card
    utilization: float
    tp: int
    weights: float  # bytes per GPU
    overhead: float
    kv_per_token: float  # bytes per GPU
    max_model_len: int
    sequences: int  # what one engine is sent per optimizer step

    @property
    def kv_room(self) -> float:
        return self.budget - self.weights - self.overhead

    @property
    def kv_one_sequence(self) -> float:
        return self.kv_per_token * self.max_model_len

    @property
    def fits(self) -> bool:
        return self.kv_room >= self.kv_one_sequence

    @property
    def sequences_at_once(self) -> int:
        """Sequences of `max_model_len` tokens the KV cache holds together (at most those it is sent)."""
        return max(0, min(self.sequences, int(self.kv_room // self.kv_one_sequence)))

    @property
    def utilization_needed(self) -> float:
        """The least `gpu_memory_utilization` that holds all `sequences` at once."""
        return (self.weights + self.overhead + self.sequences * self.kv_one_sequence) / (self.budget / self.utilization)

    def describe(self) -> str:
        verdict = "fits" if self.fits else "DOES NOT FIT"
        text = (
            f"vLLM {self.budget / GIB:.1f} GiB per GPU ({self.utilization:g} x card): weights "
            f"{self.weights / GIB:.1f} (TP {self.tp}) + overhead {self.overhead / GIB:.0f} + KV "
            f"{self.kv_per_token / 1024:.0f} KiB per token -> {verdict}"
        )
        if not self.fits:
            need = (self.weights + self.overhead + self.kv_one_sequence) / (self.budget / self.utilization)
            return f"{text}; one {self.max_model_len:,}-token sequence needs vllm_gpu_memory_utilization >= {need:.2f}"
        return (
            f"{text}; KV room for {self.sequences_at_once} of the {self.sequences} sequences of "
            f"{self.max_model_len:,} tokens it generates per step at once"
        )


def rollout_fit(x: PlanInputs, gpu_memory_bytes: float) -> RolloutFit | None:
    """vLLM's budget against its needs on one GPU; None without a colocated vLLM."""
    s = x.setup
    if not s.rollout_gpu_fraction:
        return None
    shape, tp = x.shape, s.rollout_tp
    kv_heads_per_gpu = max(1, shape.kv_heads // tp)
    return RolloutFit(
        budget=s.rollout_gpu_fraction * gpu_memory_bytes,
        utilization=s.rollout_gpu_fraction,
        tp=tp,
        weights=2 * x.total_params / tp,
        overhead=VLLM_OVERHEAD,
        kv_per_token=2 * shape.layers * kv_heads_per_gpu * shape.head_dim * KV_BYTES,
        max_model_len=s.rollout_max_model_len or x.seq_len,
        sequences=x.setup.micro_batch * x.grad_accum * tp,
    )
