"""Where DeepSpeed swaps to NVMe: a launch option (`--nvme-path`) written into the run's DeepSpeed JSON, and checked
on the node before training starts (a missing mount would otherwise fail minutes in, or fill the root disk)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from finetune.errors import FinetuneError

SECTIONS = ("offload_param", "offload_optimizer")


def _nvme_sections(deepspeed: dict) -> list[dict]:
    """The offload sections of a DeepSpeed config that swap to NVMe."""
    zero = deepspeed.get("zero_optimization", {})
    return [zero[s] for s in SECTIONS if zero.get(s, {}).get("device") == "nvme"]


def nvme_paths(deepspeed: dict) -> list[str]:
    """The nvme_path of each section that offloads to NVMe."""
    return [section["nvme_path"] for section in _nvme_sections(deepspeed) if "nvme_path" in section]


def with_nvme_path(text: str, path: Path | None, source: str) -> str:
    """The DeepSpeed JSON `text` with every NVMe section swapping to `path` (unchanged when None)."""
    if path is None:
        return text
    deepspeed = json.loads(text)
    sections = _nvme_sections(deepspeed)
    if not sections:
        raise FinetuneError(f"--nvme-path {path}: {source} offloads nothing to NVMe; drop the option.")
    for section in sections:
        section["nvme_path"] = str(path)
    return json.dumps(deepspeed, indent=2) + "\n"


def check_nvme(deepspeed_text: str | None, source: str) -> None:
    """Refuse to start when the NVMe folder the DeepSpeed JSON names is missing or not writable on this node."""
    if deepspeed_text is None:
        return
    for raw in dict.fromkeys(nvme_paths(json.loads(deepspeed_text))):
        path = Path(raw)
        if not path.is_dir():
            raise FinetuneError(
                f"{source} swaps to NVMe at {path}, which is not a folder on this node: mount the drives there, or "
                "pass --nvme-path DIR (a folder on fast local NVMe; `finetune doctor RECIPE --nvme-path DIR` checks "
                "its space)."
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise FinetuneError(f"{source} swaps to NVMe at {path}, which this user cannot write to.")
