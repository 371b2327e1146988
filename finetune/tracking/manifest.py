"""The launch manifest: everything needed to reproduce a run, written beside it and into its wandb config.

Recipe id and file hash, the rendered framework config, the overrides, the dataset (name, content hash, row
counts from `finetune prepare`'s manifest), this repository's commit and dirty flag, the package versions of
the framework environment that trains, the cluster shape with the GPU model, and the wandb run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.paths import REPO_ROOT, cache_dir
from finetune.tracking.redaction import redact

if TYPE_CHECKING:
    from finetune.frameworks.base import Framework
    from finetune.launch.plan import LaunchPlan
    from finetune.tracking.decide import Tracking

FORMAT_VERSION = 1
KEY_PACKAGES = tuple(
    "torch transformers peft trl datasets accelerate deepspeed wandb llamafactory ms-swift flash-attn vllm".split()
)

_VERSIONS_SCRIPT = """
import importlib.metadata as m, json, platform, sys
out = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def manifest_name(attempt: int) -> str:
    """manifest.json for the first launch, manifest.attempt<K>.json for the K-th resume (like the configs)."""
    return "manifest.json" if attempt == 0 else f"manifest.attempt{attempt}.json"


def _env_stamp(python: Path) -> str:
    """Changes whenever packages are installed into or removed from the environment of `python`."""
    env = python.parent.parent
    digest = hashlib.sha256(str(python).encode())
    for site in sorted(env.glob("lib/python*/site-packages")):
        digest.update(str(site.stat().st_mtime_ns).encode())
    return digest.hexdigest()[:32]


def package_versions(framework: Framework) -> dict[str, str]:
    """Versions of the key packages in the framework's environment, asked of its own interpreter (cached)."""
    python = framework.python()
    cache = cache_dir() / "package-versions" / f"{_env_stamp(python)}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    try:
        command = [str(python), "-c", _VERSIONS_SCRIPT, *KEY_PACKAGES]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(versions))
    os.replace(tmp, cache)
    return versions


def gpu_models() -> list[str]:
    """The GPU model of each visible GPU (nvidia-smi), or [] on a machine without NVIDIA GPUs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        command = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def _dataset(plan: LaunchPlan) -> dict[str, Any]:
    prepared = plan.dataset_manifest
    if prepared is None:  # the config names its data itself (a hub id or the framework's registry)
        return {"name": plan.dataset, "prepared": False}
    return {
        "name": prepared.name,
        "prepared": True,
        "kind": prepared.kind,
        "content_hash": prepared.content_hash,
        "rows": {"train": prepared.counts.train, "val": prepared.counts.val},
        "sources": [{"path": s.path, "rows": s.rows_read} for s in prepared.sources],
        **_over_length(plan),
        "rows_trained": None,  # the trainer writes what it iterates when training starts (trainer/trained_rows.py)
    }


def _over_length(plan: LaunchPlan) -> dict[str, Any]:
    """What the launch counted: rows over the framework's length limit, what it does with them, and so the rows
    it is expected to train (the trainer's own count follows in `rows_trained`)."""
    report = plan.lengths
    if report is None:
        return {"over_length": None, "rows_expected": None}
    policy = report.policy
    deleted = report.deleted
    return {
        "over_length": {
            "limit": policy.limit,
            "action": policy.action,
            "setting": policy.setting,
            "tokenizer": report.tokenizer,
            "rows": {split: count.over for split, count in report.splits.items()},
            "longest": [{"row": location, "tokens": tokens} for location, tokens in report.longest],
        },
        "rows_expected": {split: count.rows - deleted[split] for split, count in report.splits.items()},
    }


def build_manifest(plan: LaunchPlan, record: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of `plan` as it runs; `record` is its launch record (commit, host, time, command: taken as
    written, so the manifest and the launch record agree)."""
    topo = plan.topology
    gpus = gpu_models()
    manifest = {
        "format_version": FORMAT_VERSION,
        "recipe": {"id": plan.recipe.id, "path": _relative(plan.recipe.path), "sha256": plan.recipe.sha256},
        "framework": plan.framework.name,
        "model": plan.model,
        "method": plan.recipe.meta.method,
        "dataset": _dataset(plan),
        "overrides": plan.overrides,
        "config": plan.config,
        "config_sha256": plan.config_sha256,
        "repository": record.get("repository"),
        "packages": package_versions(plan.framework),
        "cluster": {
            "nodes": topo.nnodes,
            "gpus_per_node": topo.nproc_per_node,
            "world_size": topo.world_size,
            "gpu_model": gpus[0] if gpus else "cpu",
            "gpus_visible": len(gpus),
        },
        "run": {
            "run_dir": str(plan.run_dir),
            "attempt": plan.attempt,
            "resume_from": str(plan.resume_from) if plan.resume_from else None,
            "started_at": record.get("started_at"),
            "host": record.get("host"),
            "command": record.get("command"),
            "finetune_version": record.get("finetune_version"),
        },
        "wandb": _wandb(plan.tracking),
    }
    return redact(manifest)


def _wandb(tracking: Tracking) -> dict[str, Any] | None:
    """The wandb run the manifest names, or None for an untracked run."""
    identity = tracking.identity
    if identity is None:
        return None
    return {
        "project": identity.project,
        "entity": identity.entity,
        "group": identity.group,
        "name": identity.name,
        "id": identity.id,
        "tags": identity.tags,
        "mode": tracking.env.get("WANDB_MODE"),
    }


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_manifest(run_dir: Path, attempt: int, manifest: dict[str, Any]) -> Path:
    path = Path(run_dir) / manifest_name(attempt)
    path.write_text(json.dumps(redact(manifest), indent=2, default=str) + "\n")
    return path
