"""Which checkpoint a resume may start from: the newest one that is complete, never a half-written one.

A run killed while saving leaves a `checkpoint-N` folder without its trainer state, with a truncated weights file
or without some rank's DeepSpeed shards; a run saved with `save_only_model` leaves no optimizer state at all. The
Hugging Face trainer's own "last checkpoint" is just the highest number; here every candidate is checked and
incomplete ones are skipped with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

WEIGHT_PATTERNS = ("adapter_model.safetensors", "model.safetensors", "model-*.safetensors", "pytorch_model*.bin")


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def step_of(path: Path) -> int | None:
    prefix, _, number = path.name.rpartition("-")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None


def checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-N` folders, oldest first."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of)


def _safetensors_readable(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
            if keys:
                f.get_slice(keys[-1])  # the last tensor ends at the file's end: a truncated file fails here
        size = path.stat().st_size
        header = int.from_bytes(path.open("rb").read(8), "little")
        offsets = json.loads(path.open("rb").read(8 + header)[8:])
        end = max((v["data_offsets"][1] for k, v in offsets.items() if k != "__metadata__"), default=0)
        return size >= 8 + header + end
    except Exception:
        return False


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when it is complete."""
    state = checkpoint / "trainer_state.json"
    try:
        global_step = json.loads(state.read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return "trainer_state.json missing or unreadable (the save did not finish)"
    if global_step != step_of(checkpoint):
        return f"trainer_state.json says step {global_step}, not {step_of(checkpoint)}"
    weights = [p for pattern in WEIGHT_PATTERNS for p in checkpoint.glob(pattern)]
    if not weights:
        return "no model or adapter weights"
    broken = [p.name for p in weights if p.suffix == ".safetensors" and not _safetensors_readable(p)]
    if broken:
        return f"truncated or unreadable weights: {', '.join(broken)}"
    latest = checkpoint / "latest"
    if latest.is_file():  # DeepSpeed: the optimizer and parameter shards of the tag it names
        return _deepspeed_incomplete(checkpoint, checkpoint / latest.read_text().strip())
    if not (checkpoint / "optimizer.pt").is_file():
        return (
            "holds the model only (saved with save_only_model: true): no optimizer state to continue from; "
            "resuming would restart Adam from zero"
        )
    return None


_OPTIM_SHARD = re.compile(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt")


def _deepspeed_incomplete(checkpoint: Path, tag: Path) -> str | None:
    """DeepSpeed's tag folder must hold one optimizer shard per rank (0..N-1, none empty), N the ranks that saved
    (the trainer writes one rng_state_<rank>.pth each), and the model states."""
    if not tag.is_dir():
        return f"DeepSpeed shards {tag.name}/ missing (the `latest` file names them)"
    shards = {int(m.group(1)): p for p in tag.iterdir() if (m := _OPTIM_SHARD.fullmatch(p.name))}
    if not shards:
        return f"DeepSpeed shards {tag.name}/ hold no optimizer states"
    saved = len(list(checkpoint.glob("rng_state_*.pth"))) or 1
    missing = sorted(set(range(max(saved, max(shards) + 1))) - set(shards))
    if missing:
        return f"DeepSpeed optimizer shards of rank(s) {', '.join(map(str, missing))} missing in {tag.name}/"
    empty = [p.name for p in shards.values() if p.stat().st_size == 0]
    if empty:
        return f"empty DeepSpeed shard(s) {', '.join(empty)}"
    if not any(tag.glob("*model_states.pt")):
        return f"DeepSpeed model states missing in {tag.name}/"
    return None


def latest_complete(output_dir: Path) -> tuple[Path | None, list[Skipped]]:
    """The newest complete checkpoint, and the newer ones skipped on the way (with why)."""
    skipped = []
    for checkpoint in reversed(checkpoints(output_dir)):
        reason = incomplete_reason(checkpoint)
        if reason is None:
            return checkpoint, skipped
        skipped.append(Skipped(checkpoint, reason))
    return None, skipped


def trained_step(output_dir: Path) -> int | None:
    """The last step a run trained: the final trainer state, else the newest checkpoint's."""
    for state in [
        Path(output_dir) / "trainer_state.json",
        *(c / "trainer_state.json" for c in reversed(checkpoints(output_dir))),
    ]:
        try:
            return int(json.loads(state.read_text())["global_step"])
        except (OSError, ValueError, KeyError):
            continue
    return None
