"""The wandb run a run directory logs to: one id, name and group for all its nodes, restarts and resumes.

The first launcher to start training in a run directory writes `wandb-run.json` (created exclusively, so two
nodes arriving together cannot both write it); every later launcher into the same directory, the other nodes
of the job as well as `launch --resume`, reads it and logs into the same wandb run.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

IDENTITY_NAME = "wandb-run.json"
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class RunIdentity:
    id: str
    name: str
    project: str
    group: str
    entity: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str = "online"  # what a resume uses unless told otherwise
    created_at: str = ""


def new_run_id() -> str:
    """Eight lowercase letters and digits, like the ids wandb makes itself."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def default_run_name(model: str, method: str, dataset: str | None, when: datetime | None = None) -> str:
    """`<model>-<method>-<dataset>-<time>`, e.g. `glm-4.5-air-lora-support-20250801-142233`."""
    stamp = f"{when or datetime.now():%Y%m%d-%H%M%S}"
    return "-".join(part for part in (model, method, dataset or "data", stamp) if part)


def identity_path(run_dir: Path) -> Path:
    return Path(run_dir) / IDENTITY_NAME


def read_identity(run_dir: Path) -> RunIdentity | None:
    path = identity_path(run_dir)
    if not path.is_file():
        return None
    return RunIdentity(**json.loads(path.read_text()))


def claim_identity(run_dir: Path, proposed: RunIdentity) -> RunIdentity:
    """Write `proposed` unless the run directory already has an identity; return the one that holds.

    The file is written aside and linked into place, so a reader never sees it half written."""
    path = identity_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(proposed), indent=2) + "\n")
    try:
        os.link(tmp, path)
        return proposed
    except FileExistsError:
        return read_identity(run_dir) or proposed
    finally:
        tmp.unlink(missing_ok=True)
