"""A recipe on a cluster -> a ResourcePlan: parameter counts, per-GPU memory by term, verdict, ceiling, speed.

The recipe is rendered by `finetune.launch.plan.plan_launch` (same overrides, same DeepSpeed JSON) and read by
its framework adapter into a `TrainingSetup`, so the plan is of the very config a launch would start.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.frameworks.setup import TrainingSetup
from finetune.planner.checkpoint import StopCost, stop_cost
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
from finetune.planner.rollout import RolloutFit, rollout_fit
from finetune.planner.throughput import Throughput, estimate_throughput
from finetune.recipes.models import get_model
from finetune.recipes.overrides import apply_overrides


@dataclass
class ResourcePlan:
    """Everything `finetune plan` reports for one recipe on one cluster (not the launch plan: the resources)."""

    recipe_id: str
    model: str
    gpu: Gpu
    counts: ParamCounts
    inputs: PlanInputs
    memory: Memory
    max_seq_len: int
    throughput: Throughput
    tokens: float | None = None
    problems: list[str] = field(default_factory=list)
    rollout: RolloutFit | None = None  # a colocated vLLM's own budget (planner/rollout.py)

    @property
    def setup(self) -> TrainingSetup:
        return self.inputs.setup

    @property
    def nodes(self) -> int:
        return self.inputs.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.inputs.gpus_per_node

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
    def context(self) -> int:
        """The model's own context (max_position_embeddings): the longest sequence is never planned past it."""
        return self.inputs.shape.max_positions

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
        return self.trainer_fits and (self.rollout is None or self.rollout.fits)

    @property
    def trainer_fits(self) -> bool:
        return not self.problems and self.memory.required <= self.gpu.memory_gib * GIB

    @property
    def stop(self) -> StopCost:
        """Checkpoint size and write time, and what a stop on request needs (planner/checkpoint.py)."""
        return stop_cost(self.inputs, self.throughput)

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
            "gradient_checkpointing": self.setup.checkpointing,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "per_gpu_gib": round(self.per_gpu_gib, 2),
            "per_gpu_breakdown_gib": {k: round(v, 3) for k, v in self.memory.breakdown_gib().items()},
            "required_gib": round(self.required_gib, 2),
            "reserve": self.memory.reserve,
            "fits": self.fits,
            "max_seq_len": self.max_seq_len,
            "context": self.context,
            "host_ram_gib_per_node": round(self.memory.host_ram_per_node / GIB, 1),
            "nvme_gib_per_node": round(self.memory.nvme_per_node / GIB, 1),
            "tokens_per_s": [round(low), round(high)],
            "mfu": list(self.throughput.mfu),
            "tokens": self.tokens,
            "hours": [round(h, 2) for h in self.hours] if self.hours else None,
            "problems": self.problems,
            "rollout": None if self.rollout is None else self.rollout_json(),
            "checkpoint_gb": round(self.stop.checkpoint_bytes / 1e9, 2),
            "checkpoint_write_s": round(self.stop.write_s, 1),
            "step_s": [round(t, 1) for t in self.stop.step_s],
            "stop_lead_s": round(self.stop.lead_s, 1),
            "notes": list(self.setup.notes),
            "library_versions": self.counts.versions,
        }

    def rollout_json(self) -> dict[str, Any]:
        r = self.rollout
        return {
            "budget_gib": round(r.budget / GIB, 2),
            "weights_gib": round(r.weights / GIB, 2),
            "overhead_gib": round(r.overhead / GIB, 2),
            "kv_kib_per_token": round(r.kv_per_token / 1024, 1),
            "max_model_len": r.max_model_len,
            "fits": r.fits,
            "sequences_per_step": r.sequences,
            "sequences_at_once": r.sequences_at_once,
        }


# -- launch -> setup ---------------------------------------------------------------------------------------------


def setup_from_launch(launch_plan, model_config: dict[str, Any] | None = None) -> TrainingSetup:
    """The TrainingSetup of a rendered launch (`finetune.launch.plan.LaunchPlan`), read by its framework;
    `model_config`: the config.json trained (default: the recipe's model's)."""
    from finetune.launch.plan import DEEPSPEED_NAME

    recipe, framework, files = launch_plan.recipe, launch_plan.framework, launch_plan.files
    named = apply_overrides(recipe.config, launch_plan.overrides).get(framework.deepspeed_key())
    try:
        return framework.training_setup(
            launch_plan.config,
            recipe.meta,
            model_config or get_model(recipe.meta.model).config,
            deepspeed_json=json.loads(files[DEEPSPEED_NAME]) if DEEPSPEED_NAME in files else None,
            deepspeed_named=named if isinstance(named, str) else None,  # the config points at the run's copy
        )
    except (ValueError, TypeError) as exc:
        raise FinetuneError(
            f"{recipe.id}: the rendered config has a value the planner cannot read ({exc}); "
            f"`python -m finetune validate {recipe.id}` checks it with the framework's own parser."
        ) from exc


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
) -> ResourcePlan:
    """Plan `setup` for the model described by `model_config` (config.json values) on the given cluster."""
    counts = count_params(model_config, setup.lora)
    shape = ModelShape.from_config(model_config)
    inputs = PlanInputs.of(
        setup, shape, counts, gpus=nodes * gpus_per_node, gpus_per_node=gpus_per_node, seq_len=seq_len
    )
    return _resource_plan(
        inputs, counts, get_gpu(gpu), reserve, recipe_id=recipe_id, model_name=model_name, tokens=tokens
    )


def _resource_plan(
    inputs: PlanInputs,
    counts: ParamCounts,
    card: Gpu,
    reserve: float,
    *,
    recipe_id: str,
    model_name: str,
    tokens: float | None,
) -> ResourcePlan:
    """The plan of `inputs` on `card`: memory, ceiling, speed and layout problems all follow from them."""
    capacity = card.memory_gib * GIB
    problems = check_layout(inputs)
    return ResourcePlan(
        recipe_id=recipe_id,
        model=model_name,
        gpu=card,
        counts=counts,
        inputs=inputs,
        memory=estimate(inputs, capacity, reserve),
        max_seq_len=0 if problems else max_seq_len(inputs, capacity, reserve),
        throughput=estimate_throughput(inputs, card, counts.active_per_token),
        tokens=tokens,
        problems=problems,
        rollout=rollout_fit(inputs, capacity),
    )


def plan_launch_result(
    launch_plan,
    *,
    gpu: str | None = None,
    seq_len: int | None = None,
    reserve: float = DEFAULT_RESERVE,
    tokens: float | None = None,
    model_config: dict[str, Any] | None = None,
    model_name: str | None = None,
) -> ResourcePlan:
    """Plan a rendered launch on the topology it was rendered for; the model is the recipe's real model unless
    `model_config` (a local checkpoint's config.json) says otherwise."""
    recipe = launch_plan.recipe
    spec = get_model(recipe.meta.model)
    setup = setup_from_launch(launch_plan, model_config)
    topo = launch_plan.topology
    return plan_setup(
        setup,
        model_config or spec.config,
        nodes=topo.nnodes,
        gpus_per_node=topo.nproc_per_node,
        gpu=gpu or recipe.meta.gpu,
        seq_len=seq_len,
        reserve=reserve,
        tokens=tokens,
        recipe_id=recipe.id,
        model_name=model_name or spec.display_name,
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
) -> ResourcePlan:
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
    )
    return plan_launch_result(launch_plan, gpu=gpu, seq_len=seq_len, reserve=reserve, tokens=tokens)


def what_if(plan: ResourcePlan, **changes: Any) -> ResourcePlan:
    """The same plan with inputs or layout changed (`seq_len=`, `checkpointing=`, `zero_stage=`, ...; see
    `PlanInputs.changed`): for comparisons and tests."""
    return _resource_plan(
        plan.inputs.changed(**changes),
        plan.counts,
        plan.gpu,
        plan.memory.reserve,
        recipe_id=plan.recipe_id,
        model_name=plan.model,
        tokens=plan.tokens,
    )
