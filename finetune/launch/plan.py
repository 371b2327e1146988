"""`finetune launch`: recipe + overrides + model + dataset + cluster -> a run directory and a torchrun command.

Everything is decided before anything starts: the config is rendered and checked by the framework's own
argument parser, the DeepSpeed JSON by DeepSpeed's config class, and only then is the run directory claimed
and torchrun started. `--dry-run` stops after printing what would run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import subprocess
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from finetune import __version__
from finetune.catalog import JOIN_TIMEOUT_S
from finetune.launch.topology import Topology, resolve_topology
from finetune.errors import FinetuneError, suggest
from finetune.frameworks import get_framework
from finetune.frameworks.base import Framework
from finetune.recipes.models import get_model
from finetune.recipes.overrides import apply_overrides, parse_overrides
from finetune.paths import REPO_ROOT, cache_dir
from finetune.recipes.recipe import Recipe, resolve_recipe
from finetune.tracking.plan import plan_tracking
from finetune.tracking.redaction import redact
from finetune.launch.rundir import (
    CONFIG_NAME,
    LOGS_NAME,
    OUTPUT_NAME,
    check_fresh,
    claim_run_dir,
    default_run_dir,
    write_launch_record,
)

DEEPSPEED_NAME = "deepspeed.json"


@dataclass
class LaunchRequest:
    recipe: str
    model: str | None = None
    dataset: str | None = None
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    runs_root: Path = Path("runs")
    nnodes: int | None = None
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    nproc_per_node: int | None = None
    resume: Path | None = None  # continue this run directory from its newest complete checkpoint
    join_timeout: float = JOIN_TIMEOUT_S
    max_restarts: int = 0  # torchrun's elastic restarts of failed workers
    tracking: Any = None  # wandb options: finetune.tracking.settings.TrackingFlags


@dataclass
class LaunchPlan:
    recipe: Recipe
    framework: Framework
    topology: Topology
    run_dir: Path
    config: dict[str, Any]
    files: dict[str, str]
    argv: list[str]
    env: dict[str, str]
    model: str
    dataset: str | None
    dataset_manifest: dict[str, Any] | None
    overrides: dict[str, Any]
    warnings: list[str]
    attempt: int = 0  # 0 for the first launch into the run directory, K for its K-th resume
    resume_from: Path | None = None
    skipped_checkpoints: list = field(default_factory=list)
    join_timeout: float = JOIN_TIMEOUT_S
    tracking: Any = None  # finetune.tracking.plan.TrackingPlan

    @property
    def config_name(self) -> str:
        """The config file torchrun is pointed at: config.yaml, or config.attemptK.yaml for a resume."""
        return CONFIG_NAME if self.attempt == 0 else f"config.attempt{self.attempt}.yaml"

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.files[CONFIG_NAME].encode()).hexdigest()


def _resolve_model(model: str | None, recipe: Recipe) -> str:
    if model is None:
        return get_model(recipe.meta.model).hf_id
    path = Path(model).expanduser()
    if path.exists():
        config = path / "config.json"
        if not config.is_file():
            raise FinetuneError(f"--model {model}: {config} is missing; point --model at a Hugging Face model folder.")
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type != "glm4_moe":
            raise FinetuneError(
                f"--model {model}: {config} says model_type `{model_type}`; these recipes train glm4_moe "
                "(GLM-4.5 / GLM-4.5-Air) checkpoints."
            )
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise FinetuneError(f"--model {model}: no such folder.")
    return model  # a hub id, resolved by the framework on the training nodes


def _resolve_dataset(name: str | None, recipe: Recipe, framework: Framework, config: dict[str, Any]):
    """The prepared dataset to train on: --dataset, else the recipe's, unless the config names data itself."""
    from finetune.prepare.datasets import resolve_dataset

    if name is None and framework.has_dataset(config):
        return None
    return resolve_dataset(name or recipe.meta.dataset)


def _resolve_deepspeed(value: str) -> Path:
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / value).expanduser()
        if candidate.is_file():
            return candidate.resolve()
    raise FinetuneError(f"deepspeed: {value} not found (relative paths are read from here or the repository root).")


def _process_env(framework: Framework, topology: Topology) -> dict[str, str]:
    """Variables set for the training processes on top of the caller's environment (theirs win)."""
    defaults = {
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // topology.nproc_per_node)),
        "TORCH_EXTENSIONS_DIR": str(cache_dir() / "torch_extensions"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {**{k: v for k, v in defaults.items() if k not in os.environ}, **framework.env()}


def _unknown_key_message(recipe: Recipe, unknown: list[str], overrides: dict[str, Any], valid: list[str]) -> str:
    lines = []
    for key in unknown:
        where = f"--set {key}=..." if key in overrides else f"{recipe.path}: key `{key}`"
        lines.append(f"  {where}: {recipe.framework} has no argument `{key}`.{suggest(key, valid)}")
    return f"Unknown {recipe.framework} keys (checked with its own argument parser):\n" + "\n".join(lines)


def check_config(recipe: Recipe, framework: Framework, config: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """Raise on anything the framework's parser rejects; return its warnings."""
    result = framework.check(config, recipe.meta)
    if result.unknown_keys:
        raise FinetuneError(_unknown_key_message(recipe, result.unknown_keys, overrides, result.valid_keys))
    if result.errors:
        raise FinetuneError(
            f"{recipe.id}: {framework.display_name} rejects the rendered config:\n"
            + "\n".join(f"  {e}" for e in result.errors)
        )
    return result.warnings


def plan_launch(req: LaunchRequest, *, check: bool = True, preview: bool = False) -> LaunchPlan:
    """Everything a launch decides, without side effects. `preview` (show, validate, plan) fills what only a
    real multi-node launch must be told (the first node's address, a shared run directory) with placeholders."""
    attempt, resume_from, skipped = 0, None, []
    if req.resume is not None:
        from finetune.launch.resume import resume_request

        req, attempt, resume_from, skipped = resume_request(req)
    recipe = resolve_recipe(req.recipe)
    framework = get_framework(recipe.framework)
    if preview:
        req = replace(req, master_addr=req.master_addr or os.environ.get("MASTER_ADDR") or "NODE0_ADDR",
                      run_dir=req.run_dir or req.runs_root / f"{recipe.name}-RUN")
    topology = resolve_topology(
        nnodes=req.nnodes,
        node_rank=req.node_rank,
        master_addr=req.master_addr,
        master_port=req.master_port,
        nproc_per_node=req.nproc_per_node,
        recipe_nodes=recipe.meta.nodes,
        recipe_gpus_per_node=recipe.meta.gpus_per_node,
    )
    run_dir = (req.run_dir or default_run_dir(req.runs_root, recipe.name, topology.nnodes, dict(os.environ)))
    run_dir = run_dir.expanduser().resolve()
    if attempt == 0:
        check_fresh(run_dir, topology.nnodes)

    overrides = parse_overrides(req.overrides)
    model = _resolve_model(req.model, recipe)
    config = apply_overrides(recipe.config, overrides)
    dataset = _resolve_dataset(req.dataset, recipe, framework, config)
    config = framework.render(config, recipe.meta, model=model, dataset=dataset, output_dir=run_dir / OUTPUT_NAME)
    framework.check_dataset(config)
    tracking = plan_tracking(req.tracking, model=recipe.meta.model, method=recipe.meta.method, config=config,
                             dataset=dataset.name if dataset is not None else config.get("dataset"), run_dir=run_dir)
    config = {**config, **tracking.config}  # wandb reporting (finetune/tracking/plan.py)

    files: dict[str, str] = {}
    ds_key = framework.deepspeed_key()
    ds_file = framework.deepspeed_file(str(config[ds_key])) if config.get(ds_key) else None
    if ds_file:
        source = _resolve_deepspeed(ds_file)
        config[ds_key] = str(source)
        files[DEEPSPEED_NAME] = source.read_text()

    warnings = check_config(recipe, framework, config, overrides) if check else []

    if DEEPSPEED_NAME in files:
        config[ds_key] = str(run_dir / DEEPSPEED_NAME)  # the run keeps its own copy
    header = f"# Rendered from {recipe.id} by `python -m finetune launch`; this run's exact {framework.display_name} config.\n"
    files[CONFIG_NAME] = header + yaml.safe_dump(redact(config), sort_keys=False)
    config_name = CONFIG_NAME
    if attempt:
        from finetune.launch.resume import check_same_config

        check_same_config(run_dir, files[CONFIG_NAME])
        config_name = f"config.attempt{attempt}.yaml"
        resumed = {**config, "resume_from_checkpoint": str(resume_from)}
        files[config_name] = f"# Attempt {attempt}: {CONFIG_NAME} resumed from {resume_from.name}.\n" + yaml.safe_dump(
            resumed, sort_keys=False
        )

    entry = framework.entry_args(run_dir / config_name, recipe.meta)
    rdzv_id = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    torchrun = topology.torchrun_args(rdzv_id=rdzv_id, join_timeout=req.join_timeout, max_restarts=req.max_restarts)
    argv = [str(framework.bin("torchrun", must_exist=check)), *torchrun, *entry]
    return LaunchPlan(
        recipe=recipe,
        framework=framework,
        topology=topology,
        run_dir=run_dir,
        config=config,
        files=files,
        argv=argv,
        env={**_process_env(framework, topology), **tracking.env},
        model=model,
        dataset=dataset.name if dataset is not None else config.get("dataset"),
        dataset_manifest=dataset.manifest if dataset is not None else None,
        overrides=overrides,
        warnings=[*warnings, *tracking.warnings],
        attempt=attempt,
        resume_from=resume_from,
        skipped_checkpoints=skipped,
        join_timeout=req.join_timeout,
        tracking=tracking,
    )


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
    return redact({  # finetune/tracking/redaction.py: no secret reaches a file
        "recipe": plan.recipe.id,
        "recipe_path": str(plan.recipe.path),
        "recipe_sha256": plan.recipe.sha256,
        "framework": plan.framework.name,
        "model": plan.model,
        "dataset": plan.dataset,
        "dataset_prepared": plan.dataset_manifest is not None,
        "dataset_sha256": (plan.dataset_manifest or {}).get("content_hash"),
        "dataset_rows": (plan.dataset_manifest or {}).get("counts", {}).get("kept"),
        "overrides": plan.overrides,
        "config_sha256": plan.config_sha256,
        "attempt": plan.attempt,
        "resume_from": str(plan.resume_from) if plan.resume_from else None,
        "skipped_checkpoints": [{"path": str(s.path), "reason": s.reason} for s in plan.skipped_checkpoints],
        "topology": plan.topology.__dict__,
        "command": plan.argv,
        "env": plan.env,
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finetune_version": __version__,
        "repository": _git_state(),
    })
