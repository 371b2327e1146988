"""vLLM's CPU build inside ms-swift's trainer process (GRPO with `use_vllm`, colocated), on a machine without a GPU.

Two things of that build stop a colocated rollout engine, and both are switched off here, on CPU only:
- ms-swift registers a vLLM plugin that imports vLLM's vision models, which need torchvision; the CPU machine has
  no torchvision that imports (setup.sh removes the CUDA build). vLLM loads only the plugins `VLLM_PLUGINS`
  names, so it is set to vLLM's own plugins unless the user set it.
- The CPU build packs every linear layer's weight for its GEMM kernels and frees the original parameter, so the
  trainer's weight sync (`load_weights` after each optimizer step) finds no parameter to write into. Marking the
  layers as the build's own "skip GEMM dispatch" case keeps the plain weight, which the sync updates in place.
"""

from __future__ import annotations

import importlib.util
import os

VLLM_OWN_PLUGINS = "lora_filesystem_resolver,lora_hf_hub_resolver"


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def prepare_vllm_on_cpu() -> None:
    if not _on_cpu():
        return
    if importlib.util.find_spec("torchvision") is None:
        os.environ.setdefault("VLLM_PLUGINS", VLLM_OWN_PLUGINS)
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod

    original = UnquantizedLinearMethod.process_weights_after_loading
    if getattr(original, "_keeps_weights", False):
        return

    def process_weights_after_loading(self, layer):
        layer._cpu_skip_gemm_dispatch = True  # plain torch linear on the live weight
        return original(self, layer)

    process_weights_after_loading._keeps_weights = True
    UnquantizedLinearMethod.process_weights_after_loading = process_weights_after_loading
