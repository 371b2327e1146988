"""`finetune launch --dry-run`: what a launch would write and run, printed as comments, exports and the command."""

from __future__ import annotations

import shlex

from finetune.launch.plan import LaunchPlan


def format_dry_run(plan: LaunchPlan) -> str:
    topo = plan.topology
    lines = [
        f"# {plan.recipe.id} on node {topo.node_rank} of {topo.nnodes} "
        f"({topo.nproc_per_node} processes per node, world size {topo.world_size}); dry run: nothing was written",
        f"# run directory: {plan.run_dir}",
        *(f"# resuming from {plan.resume_from} (attempt {plan.attempt})" for _ in [plan.resume_from] if _),
        *(f"# skipped incomplete {s.path.name}: {s.reason}" for s in plan.skipped_checkpoints),
        f"# {plan.config_name} that the run would use:",
        *(f"#   {line}" for line in plan.files[plan.config_name].splitlines()[1:]),
        *(f"# warning: {w}" for w in plan.warnings),
        "# environment added to the current one:",
        *(f"export {k}={shlex.quote(v)}" for k, v in plan.env.items()),
        "# command:",
        plan.command,
    ]
    return "\n".join(lines)
