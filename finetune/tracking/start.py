"""At launch time, once the run directory is claimed: the wandb run this node logs to, and where its trainers
find the launch manifest. The decision made before (tracking/decide.py) is not changed: a new one is returned."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from finetune.tracking import MANIFEST_ENV
from finetune.tracking.decide import Tracking, wandb_env
from finetune.tracking.identity import claim_identity
from finetune.tracking.manifest import manifest_name


def claim_tracking(tracking: Tracking, run_dir: Path) -> Tracking:
    """Claim (or join) the run directory's wandb run; the tracking that holds: another node of this job may have
    claimed the directory first, and then this one logs into its run."""
    if tracking.identity is None or tracking.resumed:
        return tracking
    stamped = replace(tracking.identity, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    held = claim_identity(run_dir, stamped)
    if held.id == stamped.id:
        return replace(tracking, identity=held)
    return replace(tracking, identity=held, resumed=True, env=wandb_env(held, tracking.env["WANDB_MODE"], run_dir))


def start_tracking(tracking: Tracking, run_dir: Path, attempt: int) -> tuple[Tracking, dict[str, str]]:
    """The tracking this node runs with, and the environment its trainers need on top of the plan's: the WANDB_*
    of the wandb run that holds and the manifest's path (node 0 writes it: global rank 0 runs there, and shared
    storage shows the file to every node)."""
    tracking = claim_tracking(tracking, run_dir)
    return tracking, {**tracking.env, MANIFEST_ENV: str(Path(run_dir) / manifest_name(attempt))}
