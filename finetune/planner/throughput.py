"""How fast: model FLOPs per token and a range of model-FLOPs utilisation per engine, plus the time offloading
spends moving states over PCIe or NVMe, give a range of tokens per second.

FLOPs per token (forward + backward, causal attention): full 6 N_act + 6 d_q s L; LoRA 4 N_act + 6 d_q s L (no
weight gradients for frozen weights), N_act the parameters a token passes through.

Utilisation ranges (model FLOPs over bf16 dense peak) come from published MoE runs: Megatron 7.6 % (ms-swift,
Qwen3-30B-A3B full SFT, 16 x A800) up to 15-28 % (Megatron-Bridge, GPT-OSS-120B and Qwen3-235B on H100);
DeepSpeed ZeRO-3 with the Hugging Face MoE 0.8 % (the same ms-swift run: 91.2 s/it against Megatron's 9.6).
ZeRO-0/1/2 skip the parameter gathers; the same Python expert loop still bounds them. On a cut-down part
(H20) the non-compute time of a step is the full part's, so a utilisation m on the full part becomes
1 / (1 + share (1/m - 1)) on the cut-down one.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.planner.gpus import Gpu
from finetune.planner.memory import PlanInputs

MFU = {
    "megatron": (0.05, 0.25),
    "deepspeed-zero3": (0.005, 0.03),
    "deepspeed": (0.01, 0.05),
}
NVME_GBPS_PER_NODE = (3.0, 12.0)  # read+write bandwidth of a node's NVMe array, GB/s
CPU_ADAM_PARAMS_PER_S_PER_NODE = (1e9, 4e9)  # DeepSpeed's CPU Adam over a node's cores


def utilisation_on(gpu: Gpu, mfu: tuple[float, float]) -> tuple[float, float]:
    """The utilisation range on `gpu`, from the range measured on its platform's full part."""
    if gpu.compute_share >= 1:
        return mfu
    low, high = (1 / (1 + gpu.compute_share * (1 / m - 1)) for m in mfu)
    return low, high


def flops_per_token(x: PlanInputs, active_params: int) -> float:
    weight_passes = 4 if x.lora else 6
    attention = 6 * x.shape.q_dim * x.seq_len * x.shape.layers
    return weight_passes * active_params + attention


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: tuple[float, float]  # (low, high)
    flops_per_token: float
    mfu: tuple[float, float]
    step_tokens: int

    def hours(self, tokens: float) -> tuple[float, float]:
        """(fastest, slowest) hours for `tokens` training tokens."""
        low, high = self.tokens_per_s
        return tokens / high / 3600, tokens / low / 3600


def _offload_seconds(x: PlanInputs, gpu: Gpu, fast: bool) -> float:
    """Seconds per optimizer step that offloading adds (transfers, CPU Adam), not overlapped with compute."""
    s, ds = x.setup, x.setup.deepspeed
    pick = 1 if fast else 0
    link = gpu.host_link_gbps[pick] * 1e9
    nvme_per_gpu = NVME_GBPS_PER_NODE[pick] * 1e9 / x.gpus_per_node
    seconds = 0.0
    if ds.offload_params:
        passes = (3 if s.checkpointing else 2) * max(x.grad_accum, 1)  # forward, backward (and recompute)
        shard = 2 * x.total_params / x.gpus
        seconds += passes * shard / (link if ds.offload_params == "cpu" else min(link, nvme_per_gpu))
    if ds.offload_optimizer:
        shard = x.trainable_params / x.gpus
        seconds += 6 * shard / link  # fp32 gradients out, bf16 weights back
        seconds += x.trainable_params / x.nodes / CPU_ADAM_PARAMS_PER_S_PER_NODE[pick]
        if ds.offload_optimizer == "nvme":
            seconds += 2 * 16 * shard / nvme_per_gpu  # states read and written back
    return seconds


def estimate_throughput(x: PlanInputs, gpu: Gpu, active_params: int) -> Throughput:
    s, ds = x.setup, x.setup.deepspeed
    if s.engine == "megatron":
        mfu = MFU["megatron"]
    else:
        mfu = MFU["deepspeed-zero3" if ds.zero_stage >= 3 else "deepspeed"]
    mfu = utilisation_on(gpu, mfu)
    flops = flops_per_token(x, active_params)
    step_tokens = x.seq_len * x.micro_batch * max(x.grad_accum, 1) * x.data_parallel
    rates = []
    for fast, utilisation in ((False, mfu[0]), (True, mfu[1])):
        compute = step_tokens * flops / (x.gpus * gpu.bf16_tflops * 1e12 * utilisation)
        rates.append(step_tokens / (compute + _offload_seconds(x, gpu, fast)))
    return Throughput(tokens_per_s=(rates[0], rates[1]), flops_per_token=flops, mfu=mfu, step_tokens=step_tokens)
