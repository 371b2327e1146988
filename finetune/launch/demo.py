"""`finetune demo`: the main job end to end on a CPU, through exactly the path `finetune launch` takes.

Builds (or reuses) the GLM-4.5-Air replica, shrinks the GLM-4.5-Air LoRA recipe to it with `--set` overrides,
and launches it like `finetune launch` does (`launch.run`: the planner's gate, the format check, a fresh run
directory with its manifest, torchrun, progress lines) on the bundled sample data with the recipe's own DeepSpeed
ZeRO-3 config; then prints the run directory and the adapter. It prints the equivalent `finetune launch` command
so the same run can be repeated by hand.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from finetune.catalog import DEFAULT_MODEL
from finetune.frameworks import get_framework
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.launch.run import LaunchOptions, check_memory, run
from finetune.launch.rundir import OUTPUT_NAME
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe

DEMO_RECIPE = "llamafactory/glm45-air_lora_4xh100"


def demo_request(replica: Path, runs_root: Path, steps: int) -> LaunchRequest:
    recipe = resolve_recipe(DEMO_RECIPE)
    overrides = get_framework(recipe.framework).cpu_smoke_overrides(steps, recipe.meta)
    return LaunchRequest(
        recipe=DEMO_RECIPE,
        model=str(replica),
        overrides=[format_override(k, v) for k, v in overrides.items()],
        runs_root=runs_root,
        nnodes=1,
        node_rank=0,
        nproc_per_node=1,
    )


def as_command(req: LaunchRequest) -> str:
    args = ["launch", req.recipe, "--model", str(req.model), "--nnodes", "1", "--nproc-per-node", "1"]
    for item in req.overrides:
        args += ["--set", item]
    return ".venv/bin/python -m finetune " + shlex.join(args)


def run_demo(runs_root: Path, steps: int, *, verbose: bool = False) -> int:
    from finetune.replica.build import ensure_replica

    replica = ensure_replica(DEFAULT_MODEL)
    print(f"replica: {replica}")
    req = demo_request(replica, runs_root, steps)
    print(f"running: {as_command(req)}", flush=True)
    plan = plan_launch(req)
    options = LaunchOptions(verbose=verbose)
    check_memory(plan, options)
    code = run(plan, options)
    adapter = plan.run_dir / OUTPUT_NAME / "adapter_model.safetensors"
    if code != 0 or not adapter.is_file():
        print(f"demo failed (exit code {code}); logs: {plan.run_dir / 'logs'}")
        return code or 1
    print(f"adapter: {adapter}")
    return 0
