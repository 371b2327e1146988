"""At launch time, once the run directory is claimed: fix the wandb run and write the launch manifest."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from finetune.tracking import MANIFEST_ENV
from finetune.tracking.identity import claim_identity
from finetune.tracking.manifest import build_manifest, manifest_name, write_manifest
from finetune.tracking.plan import wandb_env

if TYPE_CHECKING:
    from finetune.launch.plan import LaunchPlan


def start_tracking(plan: LaunchPlan) -> dict[str, str]:
    """Claim (or join) the run directory's wandb run, write the manifest on node 0, and return the environment
    the trainers need on top of the plan's: the manifest's path and the WANDB_* of the run that holds (another
    node may have claimed the directory first)."""
    from finetune.launch.plan import launch_record

    env: dict[str, str] = {}
    tracking = getattr(plan, "tracking", None)
    if tracking is not None and tracking.identity is not None:
        if not tracking.resumed:
            stamped = replace(tracking.identity, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            held = claim_identity(plan.run_dir, stamped)
            if held.id != stamped.id:  # another node of this job was first: log into its run
                tracking.resumed = True
                tracking.env = wandb_env(held, tracking.env["WANDB_MODE"], plan.run_dir)
            tracking.identity = held
        env.update(tracking.env)
    attempt = getattr(plan, "attempt", 0)
    path = plan.run_dir / manifest_name(attempt)
    if plan.topology.node_rank == 0:
        write_manifest(plan.run_dir, attempt, build_manifest(plan, launch_record(plan)))
    env[MANIFEST_ENV] = str(path)  # global rank 0 runs on node 0; shared storage shows the file to every node
    return env
