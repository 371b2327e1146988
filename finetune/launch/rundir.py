"""Run directories: one per job, shared by its nodes, never overwritten.

A run directory holds the rendered framework config (`config.yaml`), the DeepSpeed JSON it uses, one launch
record per node (`launch-node<R>.json`), the nodes' logs and the framework's output. Every node of a job
writes into the same directory: the first to arrive creates the config, the others must find the very same
config there, and no node may launch twice into one directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

CONFIG_NAME = "config.yaml"
OUTPUT_NAME = "output"
LOGS_NAME = "logs"


def default_run_dir(runs_root: Path, recipe_name: str, nnodes: int, environ: dict[str, str]) -> Path:
    """`runs/<recipe>-<time>` on one node; on several, a name every node derives alike (the Slurm job id)."""
    if nnodes > 1:
        job = environ.get("SLURM_JOB_ID")
        if not job:
            raise FinetuneError(
                "A multi-node launch needs the same run directory on every node: pass --run-dir PATH "
                "(on storage all nodes share)."
            )
        return runs_root / f"{recipe_name}-job{job}"
    return runs_root / f"{recipe_name}-{datetime.now():%Y%m%d-%H%M%S}"


def attempt_config_name(attempt: int) -> str:
    """The config torchrun is pointed at: config.yaml first, config.attempt<K>.yaml for the K-th resume."""
    return CONFIG_NAME if attempt == 0 else f"config.attempt{attempt}.yaml"


def launch_record_path(run_dir: Path, node_rank: int, attempt: int = 0) -> Path:
    """launch-node<R>.json for the first launch, launch-node<R>.attempt<K>.json for the K-th resume."""
    return run_dir / (
        f"launch-node{node_rank}.json" if attempt == 0 else f"launch-node{node_rank}.attempt{attempt}.json"
    )


def _write_exclusive(path: Path, text: str) -> bool:
    """Create `path` with `text`, whole or not at all; False when it already exists (then nothing is written).

    The text goes into a file of this process's own first, which is then hard-linked into place: a node that finds
    the file (another node arriving at the same moment) always reads all of it, never a file still being written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def claim_run_dir(run_dir: Path, node_rank: int, files: Mapping[str, str], attempt: int = 0) -> None:
    """Create or join `run_dir` for this node, writing `files` (name -> text) that all nodes share.

    Refuses when this node already launched into the directory, when a shared file differs from ours (the
    nodes rendered different configs), or when a single-node run would reuse a directory that has content.
    """
    record = launch_record_path(run_dir, node_rank, attempt)
    if record.exists():
        raise FinetuneError(
            f"{run_dir} already holds a run launched from node {node_rank} ({record.name}); run directories are "
            "never overwritten: choose another --run-dir."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOGS_NAME).mkdir(exist_ok=True)
    for name, text in files.items():
        path = run_dir / name
        if not _write_exclusive(path, text) and path.read_text() != text:
            raise FinetuneError(
                f"{path} exists and differs from what this node rendered: either the directory belongs to another "
                "run (choose another --run-dir) or the nodes disagree (same recipe, overrides, dataset and "
                "repository version on every node?)."
            )


def write_launch_record(run_dir: Path, node_rank: int, record: dict[str, Any], attempt: int = 0) -> Path:
    path = launch_record_path(run_dir, node_rank, attempt)
    if not _write_exclusive(path, json.dumps(record, indent=2, default=str) + "\n"):
        raise FinetuneError(f"{path} appeared while launching: another launcher is using node rank {node_rank}.")
    return path


def check_fresh(run_dir: Path, nnodes: int) -> None:
    """A single-node run starts in an empty or absent directory."""
    if nnodes == 1 and run_dir.exists() and any(run_dir.iterdir()):
        raise FinetuneError(
            f"Run directory {run_dir} exists and is not empty; it is never overwritten: choose another --run-dir."
        )


def environment_snapshot(keys: list[str]) -> dict[str, str]:
    return {k: os.environ[k] for k in keys if k in os.environ}
