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
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from finetune import __version__
from finetune.distributed import Topology, resolve_topology
from finetune.errors import FinetuneError, suggest
from finetune.frameworks import get_framework
from finetune.frameworks.base import Framework
from finetune.models import get_model
from finetune.overrides import apply_overrides, parse_overrides
from finetune.paths import DATA_DIR, REPO_ROOT, cache_dir
from finetune.recipe import Recipe, resolve_recipe
from finetune.rundir import (
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
    overrides: dict[str, Any]
    warnings: list[str]

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


def _resolve_deepspeed(value: str) -> Path:
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / value).expanduser()
        if candidate.is_file():
            return candidate.resolve()
    raise FinetuneError(f"deepspeed: {value} not found (relative paths are read from here or the repository root).")


def _process_env(framework: Framework, topology: Topology) -> dict[str, str]:
    """Variables set for the training processes on top of the caller's environment (theirs win)."""
    wanted = {
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // topology.nproc_per_node)),
        "TORCH_EXTENSIONS_DIR": str(cache_dir() / "torch_extensions"),
        "TOKENIZERS_PARALLELISM": "false",
        **framework.env(),
    }
    return {k: v for k, v in wanted.items() if k not in os.environ}


def _unknown_key_message(recipe: Recipe, unknown: list[str], overrides: dict[str, Any], valid: list[str]) -> str:
    lines = []
    for key in unknown:
        where = f"--set {key}=..." if key in overrides else f"{recipe.path}: key `{key}`"
        lines.append(f"  {where}: {recipe.framework} has no argument `{key}`.{suggest(key, valid)}")
    return f"Unknown {recipe.framework} keys (checked with its own argument parser):\n" + "\n".join(lines)


def check_config(recipe: Recipe, framework: Framework, config: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """Raise on anything the framework's parser rejects; return its warnings."""
    result = framework.check(config)
    if result.unknown_keys:
        raise FinetuneError(_unknown_key_message(recipe, result.unknown_keys, overrides, result.valid_keys))
    if result.errors:
        raise FinetuneError(
            f"{recipe.id}: {framework.display_name} rejects the rendered config:\n"
            + "\n".join(f"  {e}" for e in result.errors)
        )
    return result.warnings


def plan_launch(req: LaunchRequest, *, check: bool = True) -> LaunchPlan:
    recipe = resolve_recipe(req.recipe)
    framework = get_framework(recipe.framework)
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
    check_fresh(run_dir, topology.nnodes)

    overrides = parse_overrides(req.overrides)
    model = _resolve_model(req.model, recipe)
    config = framework.render(
        apply_overrides(recipe.config, overrides),
        model=model,
        dataset=req.dataset,
        data_dir=DATA_DIR,
        output_dir=run_dir / OUTPUT_NAME,
    )
    framework.check_dataset(config)

    files: dict[str, str] = {}
    ds_key = framework.deepspeed_key()
    if config.get(ds_key):
        source = _resolve_deepspeed(str(config[ds_key]))
        config[ds_key] = str(source)
        files[DEEPSPEED_NAME] = source.read_text()

    warnings = check_config(recipe, framework, config, overrides) if check else []

    if ds_key in config:
        config[ds_key] = str(run_dir / DEEPSPEED_NAME)  # the run keeps its own copy
    header = f"# Rendered from {recipe.id} by `python -m finetune launch`; this run's exact {framework.display_name} config.\n"
    files[CONFIG_NAME] = header + yaml.safe_dump(config, sort_keys=False)

    argv = [str(framework.bin("torchrun")), *topology.torchrun_args(), *framework.entry_args(run_dir / CONFIG_NAME)]
    return LaunchPlan(
        recipe=recipe,
        framework=framework,
        topology=topology,
        run_dir=run_dir,
        config=config,
        files=files,
        argv=argv,
        env=_process_env(framework, topology),
        model=model,
        dataset=config.get("dataset"),
        overrides=overrides,
        warnings=warnings,
    )


def format_dry_run(plan: LaunchPlan) -> str:
    topo = plan.topology
    lines = [
        f"# {plan.recipe.id} on node {topo.node_rank} of {topo.nnodes} "
        f"({topo.nproc_per_node} processes per node, world size {topo.world_size}); dry run: nothing was written",
        f"# run directory: {plan.run_dir}",
        f"# {CONFIG_NAME} that the run would use:",
        *(f"#   {line}" for line in plan.files[CONFIG_NAME].splitlines()[1:]),
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
    return {
        "recipe": plan.recipe.id,
        "recipe_path": str(plan.recipe.path),
        "recipe_sha256": plan.recipe.sha256,
        "framework": plan.framework.name,
        "model": plan.model,
        "dataset": plan.dataset,
        "overrides": plan.overrides,
        "config_sha256": plan.config_sha256,
        "topology": plan.topology.__dict__,
        "command": plan.argv,
        "env": plan.env,
        "host": socket.gethostname(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finetune_version": __version__,
        "repository": _git_state(),
    }


def execute(plan: LaunchPlan) -> int:
    """Claim the run directory, write config and record, run torchrun with its output teed to the node's log."""
    claim_run_dir(plan.run_dir, plan.topology.node_rank, plan.files)
    write_launch_record(plan.run_dir, plan.topology.node_rank, launch_record(plan))
    log_path = plan.run_dir / LOGS_NAME / f"node{plan.topology.node_rank}.log"
    env = {**os.environ, **plan.env}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(plan.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        forward = lambda signum, _frame: proc.send_signal(signum)  # noqa: E731
        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                log.write(chunk)
            return proc.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
