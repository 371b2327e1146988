"""`finetune sync RUN_DIR`: upload a run's offline wandb data from a machine that has network.

An air-gapped cluster trains with `--wandb-mode offline`; wandb then writes `RUN_DIR/wandb/offline-run-*`.
Copy the run directory (or just its `wandb/` folder) anywhere with network and a wandb login, and this runs
`wandb sync` on those folders, oldest first, so a resumed run's parts land in the one run they share.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.tracking.offline_reader import offline_run_dirs, read_offline_run


@dataclass
class OfflineRunInfo:
    path: Path
    id: str
    name: str
    project: str
    rows: int
    synced: bool


def is_synced(run_path: Path) -> bool:
    """wandb marks a synced offline run with `run-<id>.wandb.synced` beside its data."""
    return any(run_path.glob("run-*.wandb.synced"))


def describe(run_path: Path) -> OfflineRunInfo:
    try:
        run = read_offline_run(run_path)
        return OfflineRunInfo(run_path, run.id, run.name, run.project, len(run.history), is_synced(run_path))
    except (ValueError, OSError) as exc:  # a run still being written, or damaged: wandb sync decides
        return OfflineRunInfo(run_path, "?", f"(unreadable: {exc})", "?", 0, is_synced(run_path))


def wandb_executable(run_dir: Path) -> Path:
    """`wandb` of the environment that trained the run (it wrote the files), else this one's, else PATH's."""
    candidates = []
    record = Path(run_dir) / "launch-node0.json"
    if record.is_file():
        from finetune.frameworks import get_framework

        try:
            candidates.append(get_framework(json.loads(record.read_text())["framework"]).bin("wandb", must_exist=False))
        except (FinetuneError, KeyError, ValueError):
            pass
    candidates.append(Path(sys.executable).parent / "wandb")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which("wandb")
    if found is None:
        raise FinetuneError("No `wandb` program found: run ./setup.sh, or install wandb where you sync.")
    return Path(found)


def runs_to_sync(run_dir: Path, *, include_synced: bool = False) -> list[OfflineRunInfo]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FinetuneError(f"{run_dir}: no such run directory.")
    runs = [describe(p) for p in offline_run_dirs(run_dir)]
    if not runs:
        raise FinetuneError(
            f"{run_dir} has no offline wandb runs (RUN_DIR/wandb/offline-run-*): was it launched with "
            "--wandb-project and --wandb-mode offline?"
        )
    return [r for r in runs if include_synced or not r.synced]


def sync_command(
    wandb: Path, runs: list[OfflineRunInfo], *, dry_run: bool = False, include_synced: bool = False
) -> list[str]:
    flags = [*(["--dry-run"] if dry_run else []), *(["--include-synced"] if include_synced else [])]
    return [str(wandb), "sync", *flags, *(str(r.path) for r in runs)]
