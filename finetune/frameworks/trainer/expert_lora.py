"""LoRA on the routed experts inside the frameworks (runs in their environments).

Two things the pinned frameworks lack, both small:

- LLaMA-Factory 0.9.5 has no key for PEFT's `target_parameters` (the only way to adapt transformers 5's fused
  3-D expert weights). `add_target_parameters` wraps the `get_peft_model` its adapter module calls and adds the
  parameters a recipe names (`finetune.lora_target_parameters`, passed as FINETUNE_LORA_TARGET_PARAMETERS).
- Under DeepSpeed ZeRO-3 the expert weights are partitioned when PEFT wraps them, and PEFT reads their shape to
  size the adapter: an empty partition, and LLaMA-Factory's run fails (PEFT 0.18.1: IndexError;
  tests/e2e/test_expert_lora.py goes red without this). `gather_experts_while_wrapping` gathers one expert tensor
  at a time, only while PEFT wraps it (the adapter's own tensors are created full, as for any LoRA under ZeRO-3).
  ms-swift 4.6's run wraps them without it as well; both entries install it, so neither depends on that.
docs/experts.md.
"""

from __future__ import annotations

import os

TARGET_PARAMETERS_ENV = "FINETUNE_LORA_TARGET_PARAMETERS"


def target_parameters() -> list[str]:
    return [p for p in os.environ.get(TARGET_PARAMETERS_ENV, "").split(",") if p]


def add_target_parameters() -> None:
    """LLaMA-Factory: PEFT also adapts the parameters FINETUNE_LORA_TARGET_PARAMETERS names (none: untouched)."""
    wanted = target_parameters()
    if not wanted:
        return
    import llamafactory.model.adapter as adapter

    original = adapter.get_peft_model
    if getattr(original, "_target_parameters", None) == wanted:
        return

    def get_peft_model(model, peft_config, *args, **kwargs):
        peft_config.target_parameters = list(dict.fromkeys([*(peft_config.target_parameters or []), *wanted]))
        return original(model, peft_config, *args, **kwargs)

    get_peft_model._target_parameters = wanted
    adapter.get_peft_model = get_peft_model


def gather_experts_while_wrapping() -> None:
    """PEFT's parameter wrapper sized from a ZeRO-3-partitioned expert tensor: gather it while wrapping."""
    from peft.tuners.lora.layer import ParamWrapper

    original = ParamWrapper.__init__
    if getattr(original, "_gathers", False):
        return

    def __init__(self, base_layer, adapter_name, parameter_name, *args, **kwargs):
        inner = base_layer.get_base_layer() if hasattr(base_layer, "get_base_layer") else base_layer
        param = getattr(inner, parameter_name, None)
        if param is not None and getattr(param, "ds_shape", None) is not None and param.numel() == 0:
            import deepspeed

            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                return original(self, base_layer, adapter_name, parameter_name, *args, **kwargs)
        return original(self, base_layer, adapter_name, parameter_name, *args, **kwargs)

    __init__._gathers = True
    ParamWrapper.__init__ = __init__
