"""`finetune launch`: recipe + overrides + model + dataset + cluster -> a run directory and a torchrun command.

Everything is decided before anything starts: the config is rendered and checked by the framework's own
argument parser, the DeepSpeed JSON by DeepSpeed's config class, and only then is the run directory claimed
and torchrun started (launch/execute.py). A plan is frozen: what only starting can tell (the wandb run another
node claimed first, the manifest's path) goes into a new plan there. `--dry-run` stops after printing what
would run (launch/dry_run.py).
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from finetune.catalog import JOIN_TIMEOUT_S
from finetune.errors import FinetuneError
from finetune.frameworks import get_framework
from finetune.frameworks.base import Framework
from finetune.launch.check import check_config
from finetune.launch.checkpoints import Skipped
from finetune.launch.nvme import with_nvme_path
from finetune.launch.resolve import resolve_deepspeed, resolve_launch_dataset, resolve_model, thinking_history
from finetune.launch.resume import check_same_config, resume_request
from finetune.launch.rundir import CONFIG_NAME, OUTPUT_NAME, attempt_config_name, check_fresh, default_run_dir
from finetune.launch.topology import Topology, resolve_topology
from finetune.paths import cache_dir
from finetune.prepare.lengths import OverLength
from finetune.prepare.manifest import Manifest
from finetune.recipes.overrides import apply_overrides, parse_overrides
from finetune.recipes.recipe import Recipe, RecipeMeta, resolve_recipe
from finetune.tracking.decide import Tracking, decide_tracking
from finetune.tracking.redaction import redact
from finetune.tracking.settings import TrackingFlags

DEEPSPEED_NAME = "deepspeed.json"


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asked for (the `launch` flags); unset fields come from the environment or the recipe."""

    recipe: str
    model: str | None = None
    dataset: str | None = None
    overrides: Sequence[str] = ()  # `--set KEY=VALUE` items
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
    nvme_path: Path | None = None  # where DeepSpeed swaps to NVMe (None: the DeepSpeed JSON's own path)
    tracking: TrackingFlags | None = None  # wandb options (None: from the environment and the user config file)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch decided; starting it (launch/execute.py) makes a new plan, never changes this one."""

    recipe: Recipe
    framework: Framework
    topology: Topology
    run_dir: Path
    config: Mapping[str, Any]  # the rendered framework config, as written to config.yaml (before redaction)
    checked_config: Mapping[str, Any]  # what the framework's parser checks: `config`, its DeepSpeed file at the source
    files: Mapping[str, str]  # name -> text of the files every node writes into the run directory
    argv: list[str]
    env: Mapping[str, str]  # added to the caller's environment for torchrun and the trainers
    model: str
    dataset: str | None
    dataset_manifest: Manifest | None  # the prepared dataset's manifest (None: the config names its data itself)
    dataset_root: Path | None  # the prepared dataset's folder (None: the config names its data itself)
    overrides: Mapping[str, Any]
    warnings: tuple[str, ...]
    tracking: Tracking
    attempt: int = 0  # 0 for the first launch into the run directory, K for its K-th resume
    resume_from: Path | None = None
    skipped_checkpoints: tuple[Skipped, ...] = ()  # newer checkpoints a resume passed over, with why
    join_timeout: float = JOIN_TIMEOUT_S
    nvme_path: Path | None = None
    lengths: OverLength | None = None  # the over-length rows and what the framework does with them (launch/lengths.py)

    @property
    def config_name(self) -> str:
        """The config file torchrun is pointed at: config.yaml, or config.attemptK.yaml for a resume."""
        return attempt_config_name(self.attempt)

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def config_sha256(self) -> str:
        return hashlib.sha256(self.files[CONFIG_NAME].encode()).hexdigest()


def _process_env(framework: Framework, topology: Topology) -> dict[str, str]:
    """Variables set for the training processes on top of the caller's environment (theirs win)."""
    defaults = {
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // topology.nproc_per_node)),
        # one folder per environment: their torch and DeepSpeed paths differ, so a shared build would be redone
        # at every switch between frameworks (./setup.sh builds both)
        "TORCH_EXTENSIONS_DIR": str(cache_dir() / "torch_extensions" / framework.name),
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {**{k: v for k, v in defaults.items() if k not in os.environ}, **framework.env()}


def plan_launch(req: LaunchRequest, *, check: bool = True, preview: bool = False) -> LaunchPlan:
    """Everything a launch decides, without side effects. `preview` (show, validate, plan) fills what only a
    real multi-node launch must be told (the first node's address, a shared run directory) with placeholders."""
    attempt, resume_from, skipped = 0, None, ()
    if req.resume is not None:
        req, attempt, resume_from, skipped = resume_request(req)
    recipe = resolve_recipe(req.recipe)
    framework = get_framework(recipe.framework)
    if preview:
        req = replace(
            req,
            master_addr=req.master_addr or os.environ.get("MASTER_ADDR") or "NODE0_ADDR",
            run_dir=req.run_dir or req.runs_root / f"{recipe.name}-RUN",
        )
    topology = resolve_topology(
        nnodes=req.nnodes,
        node_rank=req.node_rank,
        master_addr=req.master_addr,
        master_port=req.master_port,
        nproc_per_node=req.nproc_per_node,
        recipe_nodes=recipe.meta.nodes,
        recipe_gpus_per_node=recipe.meta.gpus_per_node,
    )
    run_dir = req.run_dir or default_run_dir(req.runs_root, recipe.name, topology.nnodes, dict(os.environ))
    run_dir = run_dir.expanduser().resolve()
    if attempt == 0:
        check_fresh(run_dir, topology.nnodes)

    overrides = parse_overrides(req.overrides)
    model = resolve_model(req.model, recipe)
    config = apply_overrides(recipe.config, overrides)
    dataset = resolve_launch_dataset(req.dataset, recipe, framework, config)
    config = framework.render(config, recipe.meta, model=model, dataset=dataset, output_dir=run_dir / OUTPUT_NAME)
    config = thinking_history(config, dataset, recipe)
    framework.check_dataset(config)
    dataset_name = dataset.name if dataset is not None else config.get("dataset")
    tracking = decide_tracking(
        req.tracking,
        model=recipe.meta.model,
        method=recipe.meta.method,
        dataset=dataset_name,
        config=config,
        run_dir=run_dir,
    )
    config = {**config, **tracking.config}  # wandb reporting (finetune/tracking/decide.py)

    files: dict[str, str] = {}
    ds_key = framework.deepspeed_key()
    ds_file = framework.deepspeed_file(str(config[ds_key])) if config.get(ds_key) else None
    if ds_file:
        source = resolve_deepspeed(ds_file)
        config[ds_key] = str(source)
        files[DEEPSPEED_NAME] = with_nvme_path(source.read_text(), req.nvme_path, str(source))

    checked_config = dict(config)
    warnings = check_config(recipe, framework, checked_config, overrides) if check else []

    if DEEPSPEED_NAME in files:
        config[ds_key] = str(run_dir / DEEPSPEED_NAME)  # the run keeps its own copy
    files.update(_config_files(recipe, framework, config, run_dir, attempt, resume_from))

    entry = framework.entry_args(run_dir / attempt_config_name(attempt), recipe.meta)
    rdzv_id = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
    torchrun = topology.torchrun_args(rdzv_id=rdzv_id, join_timeout=req.join_timeout, max_restarts=req.max_restarts)
    argv = [str(framework.bin("torchrun", must_exist=check)), *torchrun, *entry]
    return LaunchPlan(
        recipe=recipe,
        framework=framework,
        topology=topology,
        run_dir=run_dir,
        config=config,
        checked_config=checked_config,
        files=files,
        argv=argv,
        env={**_process_env(framework, topology), **framework.recipe_env(recipe.meta), **tracking.env},
        model=model,
        dataset=dataset_name,
        dataset_manifest=dataset.manifest if dataset is not None else None,
        dataset_root=dataset.root if dataset is not None else None,
        overrides=overrides,
        warnings=(*warnings, *tracking.warnings),
        tracking=tracking,
        attempt=attempt,
        resume_from=resume_from,
        skipped_checkpoints=skipped,
        join_timeout=req.join_timeout,
        nvme_path=req.nvme_path,
    )


def _config_files(
    recipe: Recipe, framework: Framework, config: dict[str, Any], run_dir: Path, attempt: int, resume_from: Path | None
) -> dict[str, str]:
    """config.yaml as every node writes it (secrets masked); a resume checks that it is still the run's and adds
    config.attemptK.yaml, the same config continued from the checkpoint."""
    header = (
        f"# Rendered from {recipe.id} by `python -m finetune launch`; "
        f"this run's exact {framework.display_name} config.\n"
    )
    files = {CONFIG_NAME: header + yaml.safe_dump(redact(config), sort_keys=False)}
    if attempt:
        assert resume_from is not None
        check_same_config(run_dir, files[CONFIG_NAME])
        resumed = {**config, "resume_from_checkpoint": str(resume_from)}
        files[attempt_config_name(attempt)] = (
            f"# Attempt {attempt}: {CONFIG_NAME} resumed from {resume_from.name}.\n"
            + yaml.safe_dump(resumed, sort_keys=False)
        )
    return files


def check_together(requests: list[LaunchRequest]) -> None:
    """The frameworks' parsers over many requests at once, one framework import each instead of one per request.
    The verdicts go to the cache `plan_launch` reads, so planning each request afterwards answers at once; a request
    that cannot be planned is left for that planning to report."""
    by_framework: dict[str, list[tuple[Framework, dict, RecipeMeta]]] = {}
    for req in requests:
        try:
            plan = plan_launch(req, check=False, preview=True)
        except FinetuneError:
            continue
        by_framework.setdefault(plan.framework.name, []).append((plan.framework, plan.checked_config, plan.recipe.meta))
    for items in by_framework.values():
        items[0][0].check_many([(config, meta) for _, config, meta in items])
