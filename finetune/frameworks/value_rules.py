"""Values the frameworks' parsers accept but their trainers reject at run time, or silently misuse: rules per key.

The parsers check types and choices; a negative sequence length, a zero batch or a memory share above 1 passes
them and fails minutes later (or trains something else). Each rule names the key, the bound and why; both
frameworks spell these keys alike where they share them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    test: Callable[[float], bool]
    says: str  # the rule, as the error states it


POSITIVE = Rule(lambda v: v > 0, "must be > 0")
NON_NEGATIVE = Rule(lambda v: v >= 0, "must be >= 0")
SHARE = Rule(lambda v: 0 < v <= 1, "must be in (0, 1]")
FRACTION = Rule(lambda v: 0 <= v < 1, "must be in [0, 1)")
STEPS = Rule(lambda v: v > 0 or v == -1, "must be > 0, or -1 for no limit")

RULES: dict[str, Rule] = {
    **dict.fromkeys(
        (
            "cutoff_len",
            "max_length",
            "max_completion_length",
            "vllm_max_model_len",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "global_batch_size",
            "micro_batch_size",
            "num_generations",
            "lora_rank",
            "lora_alpha",
            "learning_rate",
            "num_train_epochs",
            "logging_steps",
            "save_steps",
            "temperature",
            "vllm_tensor_parallel_size",
            "tensor_model_parallel_size",
            "pipeline_model_parallel_size",
            "expert_model_parallel_size",
            "context_parallel_size",
            "save_total_limit",
        ),
        POSITIVE,
    ),
    **dict.fromkeys(("warmup_steps", "beta", "weight_decay", "max_grad_norm", "seed"), NON_NEGATIVE),
    **dict.fromkeys(("warmup_ratio", "lora_dropout"), FRACTION),
    "vllm_gpu_memory_utilization": SHARE,
    "max_steps": STEPS,
    "train_iters": POSITIVE,
}


def value_errors(config: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(key, value, rule) for every value of `config` a rule rejects (values that are not numbers are left to the
    framework's parser, which checks types)."""
    errors = []
    for key, rule in RULES.items():
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not rule.test(value):
            errors.append((key, value, rule.says))
    return errors
