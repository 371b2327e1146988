"""A recipe on a cluster -> a Plan: parameter counts, per-GPU memory by term, verdict, ceiling, speed.

The recipe is rendered by `finetune.launch.plan.plan_launch` (same overrides, same DeepSpeed JSON), so the plan is
of the very config a launch would start.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.recipes.models import get_model
from finetune.planner.gpus import Gpu, get_gpu
from finetune.planner.memory import (
    DEFAULT_RESERVE,
    GIB,
    Memory,
    PlanInputs,
    check_layout,
    estimate,
    max_seq_len,
)
from finetune.planner.params import ModelShape, ParamCounts, count_params
from finetune.frameworks.setup import TrainingSetup, llamafactory_setup, megatron_grad_accum, swift_setup
from finetune.planner.throughput import Throughput, estimate_throughput


@dataclass
class Plan:
    """Everything `finetune plan` reports for one recipe on one cluster."""

    recipe_id: str
    model: str
    setup: TrainingSetup
    gpu: Gpu
    nodes: int
    gpus_per_node: int
    counts: ParamCounts
    inputs: PlanInputs
    memory: Memory
    max_seq_len: int
    throughput: Throughput
    tokens: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def total_params(self) -> int:
        return self.inputs.total_params

    @property
    def trainable_params(self) -> int:
        return self.inputs.trainable_params

    @property
    def capacity_gib(self) -> float:
        return self.gpu.memory_gib

    @property
    def per_gpu_gib(self) -> float:
        return self.memory.total / GIB

    @property
    def required_gib(self) -> float:
        return self.memory.required / GIB

    @property
    def fits(self) -> bool:
        return not self.problems and self.memory.required <= self.gpu.memory_gib * GIB

    @property
    def hours(self) -> tuple[float, float] | None:
        return self.throughput.hours(self.tokens) if self.tokens else None

    def to_json(self) -> dict[str, Any]:
        low, high = self.throughput.tokens_per_s
        return {
            "recipe": self.recipe_id,
            "model": self.model,
            "training": self.setup.describe(),
            "cluster": {
                "nodes": self.nodes,
                "gpus_per_node": self.gpus_per_node,
                "gpu": self.gpu.key,
                "gpu_memory_gib": self.gpu.memory_gib,
            },
            "seq_len": self.inputs.seq_len,
            "micro_batch": self.inputs.micro_batch,
            "gradient_checkpointing": self.inputs.checkpointing,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "per_gpu_gib": round(self.per_gpu_gib, 2),
            "per_gpu_breakdown_gib": {k: round(v, 3) for k, v in self.memory.breakdown_gib().items()},
            "required_gib": round(self.required_gib, 2),
            "reserve": self.memory.reserve,
            "fits": self.fits,
            "max_seq_len": self.max_seq_len,
            "host_ram_gib_per_node": round(self.memory.host_ram_per_node / GIB, 1),
            "nvme_gib_per_node": round(self.memory.nvme_per_node / GIB, 1),
            "tokens_per_s": [round(low), round(high)],
            "mfu": list(self.throughput.mfu),
            "tokens": self.tokens,
            "hours": [round(h, 2) for h in self.hours] if self.hours else None,
            "problems": self.problems,
            "notes": list(self.setup.notes),
            "library_versions": self.counts.versions,
        }


# -- recipe -> setup ---------------------------------------------------------------------------------------------


def setup_from_launch(launch_plan) -> TrainingSetup:
    """The TrainingSetup of a rendered launch (`finetune.launch.plan.LaunchPlan`)."""
    from finetune.launch.plan import DEEPSPEED_NAME

    try:
        return _setup(launch_plan, DEEPSPEED_NAME)
    except (ValueError, TypeError) as exc:
        raise FinetuneError(
            f"{launch_plan.recipe.id}: the rendered config has a value the planner cannot read ({exc}); "
            f"`python -m finetune validate {launch_plan.recipe.id}` checks it with the framework's own parser."
        ) from exc


def _setup(launch_plan, deepspeed_name: str) -> TrainingSetup:
    recipe, config = launch_plan.recipe, launch_plan.config
    ds = json.loads(launch_plan.files[deepspeed_name]) if deepspeed_name in launch_plan.files else None
    if recipe.framework == "llamafactory":
        return llamafactory_setup(config, ds, launch_plan.framework.shape(config))
    if recipe.framework == "swift":
        max_positions = ModelShape.from_config(get_model(recipe.meta.model).config).max_positions
        engine = getattr(recipe.meta, "engine", None)
        megatron = None if engine is None else engine == "megatron"
        return swift_setup(config, ds, max_positions=max_positions, megatron=megatron)
    raise FinetuneError(f"The planner does not know framework `{recipe.framework}`.")


# -- setup + model + cluster -> plan ---------------------------------------------------------------------------------


def plan_setup(
    setup: TrainingSetup,
    model_config: dict[str, Any],
    *,
    nodes: int,
    gpus_per_node: int,
    gpu: str,
    seq_len: int | None = None,
    reserve: float = DEFAULT_RESERVE,
    tokens: float | None = None,
    recipe_id: str = "",
    model_name: str = "",
    megatron_config: dict[str, Any] | None = None,
) -> Plan:
    """Plan `setup` for the model described by `model_config` (config.json values) on the given cluster."""
    shape = ModelShape.from_config(model_config)
    counts = count_params(model_config, setup.lora)
    gpus = nodes * gpus_per_node
    total, routed = counts.total, counts.routed_experts
    if setup.mtp_layers and setup.engine == "megatron":  # Megatron builds and trains the MTP layer(s)
        per_layer_experts = routed // max(shape.moe_layers, 1)
        total += counts.mtp_layer
        routed += setup.mtp_layers * per_layer_experts
    trainable = total if setup.method == "full" else counts.trainable
    trainable_routed = routed if setup.method == "full" else counts.trainable_routed_experts
    grad_accum = setup.grad_accum
    if setup.engine == "megatron" and megatron_config is not None:
        grad_accum = megatron_grad_accum(megatron_config, setup, gpus)
    ds = setup.deepspeed
    nvme_buffers = ds.param_buffer_bytes + ds.optimizer_buffer_count * min(ds.sub_group_size, trainable // gpus) * 4
    inputs = PlanInputs(
        shape=shape,
        total_params=total,
        trainable_params=trainable,
        routed_expert_params=routed,
        trainable_routed_experts=trainable_routed,
        moe_block_params=counts.moe_block,
        gpus=gpus,
        gpus_per_node=gpus_per_node,
        seq_len=seq_len or setup.seq_len,
        micro_batch=setup.micro_batch,
        grad_accum=grad_accum,
        lora=setup.method == "lora",
        engine=setup.engine,
        zero_stage=ds.zero_stage,
        offload_params=ds.offload_params,
        offload_optimizer=ds.offload_optimizer,
        nvme_buffer_bytes_per_gpu=nvme_buffers,
        tp=setup.tp,
        pp=setup.pp,
        ep=setup.ep,
        etp=setup.etp,
        cp=setup.cp,
        sequence_parallel=setup.sequence_parallel,
        distributed_optimizer=setup.distributed_optimizer,
        checkpointing=setup.checkpointing,
        logits_fused=setup.logits_fused,
        logits_tokens=setup.logits_tokens,
        reference_model=setup.reference_model,
        rollout_gpu_fraction=setup.rollout_gpu_fraction,
        rollout_sleeps=setup.rollout_sleeps,
        rollout_weights_to_host=setup.rollout_weights_to_host,
        rollout_tp=setup.rollout_tp,
        trainer_offloaded_while_rolling_out=setup.trainer_offloaded_while_rolling_out,
    )
    card = get_gpu(gpu)
    capacity = card.memory_gib * GIB
    active = counts.active_per_token
    problems = check_layout(inputs)
    return Plan(
        recipe_id=recipe_id,
        model=model_name,
        setup=setup,
        gpu=card,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        counts=counts,
        inputs=inputs,
        memory=estimate(inputs, capacity, reserve),
        max_seq_len=0 if problems else max_seq_len(inputs, capacity, reserve),
        throughput=estimate_throughput(inputs, card, active),
        tokens=tokens,
        problems=problems,
    )


def plan_launch_result(
    launch_plan, *, gpu: str | None = None, seq_len: int | None = None, reserve: float = DEFAULT_RESERVE,
    tokens: float | None = None,
) -> Plan:  # fmt: skip
    """Plan a rendered launch on the topology it was rendered for; the model is the recipe's real model."""
    recipe = launch_plan.recipe
    spec = get_model(recipe.meta.model)
    setup = setup_from_launch(launch_plan)
    topo = launch_plan.topology
    return plan_setup(
        setup,
        spec.config,
        nodes=topo.nnodes,
        gpus_per_node=topo.nproc_per_node,
        gpu=gpu or recipe.meta.gpu,
        seq_len=seq_len,
        reserve=reserve,
        tokens=tokens,
        recipe_id=recipe.id,
        model_name=spec.display_name,
        megatron_config=launch_plan.config if setup.engine == "megatron" else None,
    )


def plan_recipe(
    recipe,
    overrides: list[str] | None = None,
    *,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    gpu: str | None = None,
    seq_len: int | None = None,
    reserve: float = DEFAULT_RESERVE,
    tokens: float | None = None,
    model: str | None = None,
    dataset: str | None = None,
) -> Plan:
    """Plan a recipe (id, path or Recipe) with `--set` overrides on a cluster (default: the recipe's own).
    `model` and `dataset` only change the rendering, as in `finetune launch`; memory is always planned for the
    recipe's real model."""
    from finetune.launch.plan import LaunchRequest, plan_launch
    from finetune.recipes.recipe import Recipe, resolve_recipe

    resolved = recipe if isinstance(recipe, Recipe) else resolve_recipe(str(recipe))
    meta = resolved.meta
    unused_run_dir = Path(tempfile.gettempdir()) / "finetune-plan-never-written"  # rendering writes nothing
    launch_plan = plan_launch(
        LaunchRequest(
            recipe=str(resolved.path),
            model=model,
            dataset=dataset,
            overrides=list(overrides or []),
            run_dir=unused_run_dir,
            nnodes=nodes or meta.nodes,
            node_rank=0,
            master_addr="127.0.0.1",
            nproc_per_node=gpus_per_node or meta.gpus_per_node,
        ),
        check=False,
    )  # fmt: skip
    return plan_launch_result(launch_plan, gpu=gpu, seq_len=seq_len, reserve=reserve, tokens=tokens)


def what_if(plan: Plan, **changes: Any) -> Plan:
    """The same plan with PlanInputs fields changed (for comparisons and tests)."""
    inputs = replace(plan.inputs, **changes)
    capacity = plan.gpu.memory_gib * GIB
    reserve = plan.memory.reserve
    problems = check_layout(inputs)
    return replace(
        plan,
        inputs=inputs,
        memory=estimate(inputs, capacity, reserve),
        max_seq_len=0 if problems else max_seq_len(inputs, capacity, reserve),
        throughput=estimate_throughput(inputs, plan.gpu, plan.counts.active_per_token),
        problems=problems,
    )

