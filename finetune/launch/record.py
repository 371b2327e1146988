"""The launch record (`launch-node<R>.json`): what this node ran, where, when, and from which commit.

Built once per launch, after the run directory and the wandb run are claimed (so its environment is the one the
trainers get); the launch manifest takes its commit, host, time and command from it, so the two always agree.
`--resume` reads the recipe, model, dataset, overrides and cluster shape back from the first node's record.
"""

from __future__ import annotations

import socket
import subprocess
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from finetune import __version__
from finetune.paths import REPO_ROOT
from finetune.tracking.redaction import redact

if TYPE_CHECKING:
    from finetune.launch.plan import LaunchPlan


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def launch_record(plan: LaunchPlan) -> dict[str, Any]:
    """What `plan` runs on this node now, with secrets masked (finetune/tracking/redaction.py)."""
    return redact(
        {
            "recipe": plan.recipe.id,
            "recipe_path": str(plan.recipe.path),
            "recipe_sha256": plan.recipe.sha256,
            "framework": plan.framework.name,
            "model": plan.model,
            "dataset": plan.dataset,
            "dataset_prepared": plan.dataset_manifest is not None,
            "dataset_sha256": plan.dataset_manifest.content_hash if plan.dataset_manifest else None,
            "dataset_rows": plan.dataset_manifest.counts.kept if plan.dataset_manifest else None,
            "overrides": plan.overrides,
            "nvme_path": str(plan.nvme_path) if plan.nvme_path else None,
            "config_sha256": plan.config_sha256,
            "attempt": plan.attempt,
            "resume_from": str(plan.resume_from) if plan.resume_from else None,
            "skipped_checkpoints": [{"path": str(s.path), "reason": s.reason} for s in plan.skipped_checkpoints],
            "topology": plan.topology.__dict__,
            "command": plan.argv,
            "env": plan.env,
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "finetune_version": __version__,
            "repository": _git_state(),
        }
    )
