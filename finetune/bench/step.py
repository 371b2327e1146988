"""Real training steps on a slice, the way the recipes run them.

- LoRA: PEFT on the LLaMA-Factory recipe's targets, rank and alpha; the base weights frozen in the compute dtype,
  the adapters in fp32 (PEFT's default, as the Hugging Face trainer keeps them), AdamW on the adapters.
- full: every weight trains. On a GPU the weights and their gradients are bf16 and AdamW updates fp32 master
  copies, which is what DeepSpeed's bf16 mode keeps per parameter (2 bytes weight + 4 fp32 gradient + 12 master
  and Adam m, v: the planner's 18 bytes). On a CPU everything is fp32 and AdamW updates the weights directly.
- gradient checkpointing through `gradient_checkpointing_enable()` (non-reentrant), micro-batch 1 of random
  tokens, the model's own causal-LM loss, SDPA attention; the MoE expert implementation is switchable in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from finetune.bench.lora import RecipeLora
from finetune.bench.slice import Slice, build_model

LEARNING_RATE = 1e-5  # small, so random weights stay finite over the measured steps


class MasterWeightsAdamW:
    """AdamW over fp32 master copies of low-precision weights: the fp32 gradient is made (and the bf16 one freed)
    parameter by parameter at the step, then the updated master is copied back into the weight."""

    def __init__(self, params: list, lr: float, fused: bool):
        import torch

        self.params = params
        self.master = [p.detach().float() for p in params]
        self.optimizer = torch.optim.AdamW(self.master, lr=lr, fused=fused)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p, m in zip(self.params, self.master, strict=True):
            m.grad = None if p.grad is None else p.grad.float()
            p.grad = None
        self.optimizer.step()
        for p, m in zip(self.params, self.master, strict=True):
            p.data.copy_(m)
            m.grad = None


@dataclass
class Session:
    """One slice on one device with one method: the model, its optimizer, and what trains."""

    piece: Slice
    method: str
    device: str
    dtype: Any
    model: Any  # what is called (the PEFT model for LoRA)
    hf_model: Any  # the Hugging Face model inside (experts, checkpointing)
    optimizer: Any
    total_params: int
    trainable_params: int
    adapted: dict[str, int] = field(default_factory=dict)  # trainable parameters by component

    def set_checkpointing(self, on: bool) -> None:
        if on:
            self.hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.hf_model.gradient_checkpointing_disable()

    def set_experts(self, name: str) -> None:
        self.hf_model.set_experts_implementation(name)

    @property
    def experts(self) -> str:
        return str(self.hf_model.config._experts_implementation)

    def release(self) -> None:
        """Drop the optimizer states and gradients (after an out-of-memory error, or when done)."""
        import gc

        import torch

        self.optimizer.zero_grad()
        self.optimizer = None
        self.model = self.hf_model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _lora_targets(model, lora: RecipeLora) -> list[str]:
    if lora.targets == ("all",):  # LLaMA-Factory's `all`: every Linear but the output head
        from finetune.planner.params import all_linear_names

        return all_linear_names(model)
    return list(lora.targets)


def _count_adapted(model) -> dict[str, int]:
    from finetune.recipes.components import component_of

    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            component = component_of(name) or "other"
            counts[component] = counts.get(component, 0) + p.numel()
    return counts


def start(piece: Slice, method: str, *, device: str, dtype, lora: RecipeLora, experts_impl: str, seed: int = 0):
    """Build the slice on `device` with random weights and set it up for `method` ("lora" or "full")."""
    import torch

    hf_model = build_model(piece, device=device, dtype=dtype, experts_impl=experts_impl, seed=seed)
    hf_model.config.use_cache = False
    total = sum(p.numel() for p in hf_model.parameters())
    fused = device == "cuda"
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=0.0,
            target_modules=_lora_targets(hf_model, lora),
        )
        model = get_peft_model(hf_model, config)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, fused=fused and params[0].dtype == torch.float32)
    elif method == "full":
        model = hf_model
        params = list(model.parameters())
        if dtype == torch.float32:
            optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, fused=fused)
        else:
            optimizer = MasterWeightsAdamW(params, LEARNING_RATE, fused=fused)
    else:
        raise ValueError(f"method `{method}`: lora or full")
    model.train()
    return Session(
        piece=piece,
        method=method,
        device=device,
        dtype=dtype,
        model=model,
        hf_model=hf_model,
        optimizer=optimizer,
        total_params=total,
        trainable_params=sum(p.numel() for p in params),
        adapted=_count_adapted(model),
    )


def random_batch(vocab: int, seq_len: int, micro_batch: int, device: str, seed: int):
    """Token ids drawn uniformly from the vocabulary (labels are the inputs: every position is trained)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (micro_batch, seq_len), generator=generator)
    return ids.to(device)


def train_step(session: Session, input_ids) -> float:
    """One optimizer step on one micro-batch: forward, backward, AdamW. Returns the loss."""
    session.optimizer.zero_grad()
    loss = session.model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    session.optimizer.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss is {value}")
    return value
