"""Measuring a training step: which device, its peak memory, synchronised wall time, tokens/s and MFU.

On a GPU the peak is `torch.cuda.max_memory_allocated` (reset before the measured steps, so it covers the
weights, the optimizer states and the step's activations) and times are taken after `torch.cuda.synchronize`.
On a CPU the peak is the process's peak resident set (VmHWM, reset through /proc/self/clear_refs where Linux
allows it), and MFU is None: there is no bf16 peak to compare with, and CPU figures are never GPU figures.
"""

from __future__ import annotations

import platform
import re
import resource
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Self

from finetune.errors import FinetuneError

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Device:
    kind: str  # "gpu" or "cpu"
    name: str  # torch.cuda.get_device_name(), or "cpu"
    torch_device: str  # "cuda" or "cpu"
    planner_gpu: str | None  # the planner's catalog key for this card, when it has one
    peak_tflops: float | None  # dense bf16 peak used for MFU
    memory_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.name,
            "device_kind": self.kind,
            "planner_gpu": self.planner_gpu,
            "peak_bf16_tflops": self.peak_tflops,
            "device_memory_bytes": self.memory_bytes,
        }


def detect(requested: str | None = None, peak_tflops: float | None = None) -> Device:
    """The device to run on: `cuda` when one is present (or asked for), else the CPU."""
    import torch

    from finetune.bench.compare import gpu_key_for
    from finetune.planner.gpus import get_gpu

    want = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cpu":
        return Device("cpu", "cpu", "cpu", None, None, None)
    if want != "cuda":
        raise FinetuneError(f"--device {want}: use `cuda` or `cpu`.")
    if not torch.cuda.is_available():
        raise FinetuneError("--device cuda: torch sees no CUDA device here (a CPU-only torch, or no GPU).")
    name = torch.cuda.get_device_name(0)
    key = gpu_key_for(name)
    catalog_peak = get_gpu(key).bf16_tflops if key and "PCIE" not in name.upper() else None  # catalog: SXM parts
    peak = peak_tflops or catalog_peak
    total = torch.cuda.get_device_properties(0).total_memory
    return Device("gpu", name, "cuda", key, peak, total)


def environment() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def synchronize(device: Device) -> None:
    if device.kind == "gpu":
        import torch

        torch.cuda.synchronize()


def _vm_kib(field: str) -> int | None:
    try:
        match = re.search(rf"{field}:\s+(\d+)\s+kB", STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def resident_bytes() -> int | None:
    """The process's resident set now (Linux), to subtract what the libraries alone occupy on a CPU."""
    rss = _vm_kib("VmRSS")
    return rss * 1024 if rss is not None else None


class PeakMemory:
    """Peak memory over a block: GPU allocator peak, or on a CPU the process's peak resident set above
    `cpu_floor_bytes` (its resident set before any model was built: the interpreter and the libraries)."""

    def __init__(self, device: Device, cpu_floor_bytes: int | None = None):
        self.device = device
        self.cpu_floor_bytes = cpu_floor_bytes or 0
        self.kind = "cuda_max_allocated" if device.kind == "gpu" else "cpu_peak_rss_above_start"
        self.peak_bytes: int | None = None
        self.reserved_bytes: int | None = None
        self.baseline_bytes: int | None = None

    def __enter__(self) -> Self:
        if self.device.kind == "gpu":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_bytes = torch.cuda.memory_allocated()
        else:
            try:
                CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
            except OSError:
                self.kind = "cpu_peak_rss_since_process_start"  # not resettable here: an upper bound
            self.baseline_bytes = resident_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.kind == "gpu":
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
            self.reserved_bytes = torch.cuda.max_memory_reserved()
        else:
            hwm = _vm_kib("VmHWM")
            if hwm is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
                maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                hwm = maxrss // 1024 if platform.system() == "Darwin" else maxrss
                self.kind = "cpu_peak_rss_since_process_start"
            self.peak_bytes = max(0, hwm * 1024 - self.cpu_floor_bytes)


def timed(fn, device: Device) -> tuple[Any, float]:
    """(fn(), wall seconds), synchronised with the GPU on both ends."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def model_flops_utilisation(flops_per_token: float, tokens_per_s: float, device: Device) -> float | None:
    """Achieved model FLOPs over the device's dense bf16 peak (None on a CPU or an unknown card)."""
    if device.kind != "gpu" or not device.peak_tflops:
        return None
    return flops_per_token * tokens_per_s / (device.peak_tflops * 1e12)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class SavedForBackward:
    """Bytes autograd keeps for the backward pass of one forward, over distinct storages: what gradient
    checkpointing exists to lower, counted exactly (the saved-tensor hooks of torch.autograd.graph). Checkpointed
    regions keep their own hooks, so what they recompute is not counted. On a CPU the resident set is too coarse
    to show this on a tiny slice (its noise is as large as the activations)."""

    def __enter__(self) -> SavedForBackward:
        import torch

        self.bytes = 0
        self._seen: set[int] = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def _pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self.bytes += storage.nbytes()
        return tensor

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
