"""The planner: will a recipe fit a cluster, up to which sequence length, with how much host RAM, how fast.

`plan_recipe` plans a recipe (with overrides) on any cluster; `check_fits` is the check `finetune launch`
runs before it starts anything; `header_figures` gives the lines recipe headers carry. Parameter counts come
from the real model built on the meta device (cached), memory from the model in `memory.py`, speed from
`throughput.py`; docs/planner.md describes the model and how it compares with published measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.planner.memory import DEFAULT_RESERVE, GIB
from finetune.planner.planner import ResourcePlan, plan_launch_result, plan_recipe, plan_setup, what_if

__all__ = [
    "ResourcePlan",
    "check_fits",
    "header_figures",
    "plan_figures",
    "plan_recipe",
    "plan_setup",
    "refusal",
    "what_if",
]

TERM_NAMES = {
    "weights": "weights",
    "grads": "gradients",
    "optimizer": "optimizer states",
    "gathered": "gathered ZeRO-3 working set",
    "expert_deltas": "PEFT's routed-expert deltas (LoRA on the experts)",
    "activations": "activations",
    "logits": "logits",
    "reference_model": "reference model",
    "rollout": "rollout engine (vLLM, colocated)",
    "overhead": "overhead (CUDA context, NCCL, 10 % of activations)",
}


def trained_config(launch_plan) -> tuple[dict | None, str]:
    """The config.json a launch trains, and how to name it: a local `--model` folder's own (a GLM-4.6 folder,
    the tiny replica), else the recipe's model's; None when the folder's config is not a model the planner
    knows (then nothing is checked, and the reason is the name)."""
    from finetune.planner.params import ModelShape
    from finetune.recipes.models import get_model

    spec = get_model(launch_plan.recipe.meta.model)
    path = Path(launch_plan.model) / "config.json"
    if not path.is_file():
        return spec.config, spec.display_name  # a hub id: the real checkpoint
    try:
        config = json.loads(path.read_text())
        ModelShape.from_config(config)
    except (KeyError, ValueError, TypeError) as error:
        return None, f"{path} is not a model the planner sizes ({type(error).__name__}: {error})"
    if config == spec.config:
        return spec.config, spec.display_name
    return config, f"the model at {launch_plan.model} (its own config.json)"


def refusal(plan: ResourcePlan) -> str:
    """Why a plan does not fit, term by term, and what would."""
    x = plan.inputs
    if plan.trainer_fits:  # only the colocated vLLM does not fit its share
        return (
            f"{plan.recipe_id} does not fit {plan.nodes} x {plan.gpus_per_node} {plan.gpu.name}: the trainer does "
            f"({plan.required_gib:.1f} of {plan.capacity_gib:.1f} GiB per GPU), but its colocated rollout engine "
            f"does not: {plan.rollout.describe()}.\n`python -m finetune plan {plan.recipe_id}` shows the plan; "
            "`--force` launches anyway."
        )
    lines = [
        (
            f"{plan.recipe_id} does not fit {plan.nodes} x {plan.gpus_per_node} {plan.gpu.name}: it needs "
            f"{plan.required_gib:.1f} GiB per GPU (reserve x{plan.memory.reserve:g} on activations and logits) "
            f"of {plan.capacity_gib:.1f} GiB, at {x.seq_len:,} tokens x micro-batch {x.micro_batch}."
        )
    ]
    terms = plan.memory.breakdown_gib().items()
    lines += [f"  {TERM_NAMES[t]:<52}{gib:8.1f} GiB" for t, gib in terms if gib >= 0.05]
    lines += [f"  layout: {p}" for p in plan.problems]
    if plan.max_seq_len:
        lines.append(f"The longest sequence that fits is {plan.max_seq_len:,} tokens.")
    else:
        lines.append("No sequence length fits: the model states alone exceed the GPUs; add GPUs or offload.")
    lines.append(f"`python -m finetune plan {plan.recipe_id}` shows the plan; `--force` launches anyway.")
    return "\n".join(lines)


def check_fits(launch_plan, *, gpu: str | None = None, reserve: float = DEFAULT_RESERVE) -> ResourcePlan | None:
    """The plan of a rendered launch on the topology it is about to start (world size = nnodes x
    nproc_per_node; GPU type `gpu`, default the recipe's), or FinetuneError with the breakdown and the longest
    sequence that fits when it does not fit.

    The plan is of the model the launch trains: a local `--model` folder's own config.json (a GLM-4.6 folder, the
    tiny replica the CPU tests train), else the recipe's model. Returns None only when that folder's config is not
    a model the planner knows.
    """
    config, name = trained_config(launch_plan)
    if config is None:
        return None
    plan = plan_launch_result(launch_plan, gpu=gpu, reserve=reserve, model_config=config, model_name=name)
    if not plan.fits:
        raise FinetuneError(refusal(plan))
    return plan


def _k(tokens: int) -> str:
    return f"{tokens / 1024:.1f}k" if tokens < 100 * 1024 else f"{tokens // 1024:,}k"


def header_figures(recipe) -> list[str]:
    """Lines for the recipe header, from the planner on the recipe's own cluster: 'Label text' (first word is
    the label)."""
    return plan_figures(plan_recipe(recipe))


def _expert_lora(plan: ResourcePlan) -> str:
    """What LoRA on the routed experts costs per GPU: its parameters and their optimizer states, and on the Hugging
    Face path PEFT's full-size delta of one MoE layer in flight."""
    x, m = plan.inputs, plan.memory
    experts = x.trainable_routed_experts
    if x.setup.engine == "deepspeed":  # ZeRO-3 shards the bf16 weight, fp32 gradient and Adam states over all GPUs
        states = (2 + 4 + 12) * experts / x.gpus
    else:  # expert parallelism splits them; the distributed optimizer shards Adam over the expert-data ranks too
        local = experts / (x.setup.ep * x.setup.etp * x.setup.pp)
        expert_dp = max(1, x.gpus // (x.setup.ep * x.setup.etp * x.setup.pp))
        states = (2 + 4) * local + 12 * local / (expert_dp if x.setup.distributed_optimizer else 1)
    text = (
        f"LoRA on {x.shape.experts} routed experts x {x.shape.moe_layers} MoE layers: {experts / 1e6:,.0f} M "
        f"parameters of the {x.trainable_params / 1e6:,.0f} M trained ({states / GIB:.1f} GiB per GPU with "
        "gradients and optimizer states)"
    )
    if m.expert_deltas:
        text += f"; PEFT's full-size expert delta of one MoE layer in flight, {m.expert_deltas / GIB:.1f} GiB per GPU"
    return text + " (planner)"


def plan_figures(plan: ResourcePlan) -> list[str]:
    """The header lines of a plan: memory and verdict, ceiling, speed, and what offloading needs."""
    x, low_high = plan.inputs, plan.throughput.tokens_per_s
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    mfu = plan.throughput.mfu
    lines = [
        (
            f"Memory {plan.per_gpu_gib:.1f} GiB per GPU at {x.seq_len:,} tokens (planner; {plan.required_gib:.1f} "
            f"GiB with the x{plan.memory.reserve:g} reserve on activations -> {verdict} {plan.capacity_gib:.1f} GiB)"
        ),
        f"Ceiling {plan.max_seq_len:,} tokens per sequence (~{_k(plan.max_seq_len)}) at micro-batch {x.micro_batch}",
        (
            f"Speed {low_high[0]:,.0f}-{low_high[1]:,.0f} tokens/s on {plan.gpus} GPUs (planner, "
            f"{mfu[0]:.1%}-{mfu[1]:.1%} MFU)"
        ),
    ]
    if x.lora and x.trainable_routed_experts:
        lines.append(f"Experts {_expert_lora(plan)}")
    if plan.rollout is not None:
        lines.append(f"Rollout {plan.rollout.describe()}")
    lines.append(f"Stop {plan.stop.describe()} (planner)")
    if plan.memory.host_ram_per_node >= GIB:
        lines.append(f"Host-RAM {plan.memory.host_ram_per_node / GIB:,.0f} GiB per node for offloaded states")
    if plan.memory.nvme_per_node >= GIB:
        lines.append(f"NVMe {plan.memory.nvme_per_node / GIB:,.0f} GiB per node for offloaded states")
    return lines
