"""The GPUs a recipe can name: memory a process can use and bf16 dense peak throughput.

Memory is the capacity PyTorch reports for the card (`total_memory`, as printed in its out-of-memory
messages), a little under the marketed size. Peak throughput is the dense bf16 Tensor Core figure of the
SXM part (no sparsity). `compute_share` says how much of its platform's compute a cut-down part keeps: the
H20 is a Hopper with H100 memory and NVLink bandwidth but 15 % of its Tensor Core throughput, so the time a
step spends outside the matrix units stays that of an H100 (see throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.catalog import GPUS
from finetune.errors import FinetuneError, suggest


@dataclass(frozen=True)
class Gpu:
    key: str
    name: str
    memory_gib: float
    bf16_tflops: float
    host_link_gbps: tuple[float, float]  # GPU <-> host copy bandwidth per GPU, GB/s (low, high)
    compute_share: float = 1.0  # peak compute relative to the full part of the same platform


CATALOG = {
    gpu.key: gpu
    for gpu in (
        Gpu("h100-80gb", GPUS["h100-80gb"], 79.1, 989.0, (20.0, 50.0)),
        Gpu("h200", GPUS["h200"], 139.8, 989.0, (20.0, 50.0)),
        Gpu("h20-96gb", GPUS["h20-96gb"], 95.0, 148.0, (20.0, 50.0), compute_share=148.0 / 989.0),
        Gpu("a100-80gb", GPUS["a100-80gb"], 79.1, 312.0, (12.0, 25.0)),
    )
}


def get_gpu(key: str) -> Gpu:
    if key not in CATALOG:
        raise FinetuneError(f"Unknown GPU `{key}`; known: {', '.join(CATALOG)}.{suggest(key, CATALOG)}")
    return CATALOG[key]


def gpu_key_for(name: str, memory_gib: float) -> str | None:
    """The catalog key of a GPU as nvidia-smi names it ("NVIDIA H100 80GB HBM3", "NVIDIA H20", ...), or None."""
    words = name.upper().replace("-", " ").split()
    if "H200" in words:
        return "h200"
    if "H20" in words:
        return "h20-96gb"
    if "H100" in words and memory_gib > 70:
        return "h100-80gb"
    if "A100" in words and memory_gib > 70:
        return "a100-80gb"
    return None
