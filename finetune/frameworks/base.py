"""What the launcher needs from a training framework, and the bits all frameworks share."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT


@dataclass(frozen=True)
class TrainingShape:
    """The figures a recipe header states, read from the framework config."""

    seq_len: int
    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    deepspeed: str | None
    lora_rank: int | None
    lora_targets: tuple[str, ...] | None


@dataclass
class CheckResult:
    """What the framework's own argument parser said about a rendered config."""

    unknown_keys: list[str]
    errors: list[str]
    valid_keys: list[str]
    warnings: list[str]


class Framework:
    """One training framework: its environment, how its config is rendered, checked and launched."""

    name: str
    display_name: str
    env_dir: str  # relative to the repository root
    check_module: str  # module run inside the framework's environment to check a config

    def python(self) -> Path:
        """The framework environment's interpreter (`FINETUNE_<NAME>_PYTHON` points elsewhere)."""
        override = os.environ.get(f"FINETUNE_{self.name.upper()}_PYTHON")
        python = Path(override) if override else REPO_ROOT / self.env_dir / "bin" / "python"
        if not python.exists():
            how = f"FINETUNE_{self.name.upper()}_PYTHON={override}" if override else f"{self.env_dir}/"
            raise FinetuneError(
                f"No {self.display_name} environment at {how}: run `./setup.sh` first "
                f"(or set FINETUNE_{self.name.upper()}_PYTHON to an interpreter that has it)."
            )
        return python

    def bin(self, program: str) -> Path:
        return self.python().parent / program

    # -- rendering ---------------------------------------------------------------------------------
    def shape(self, config: dict[str, Any]) -> TrainingShape:
        raise NotImplementedError

    def render(
        self, config: dict[str, Any], *, model: str, dataset: str | None, data_dir: Path, output_dir: Path
    ) -> dict[str, Any]:
        """The config with model, dataset and output pointed where this run needs them."""
        raise NotImplementedError

    def check_dataset(self, config: dict[str, Any]) -> None:
        """Raise when the config names a dataset the framework will not find."""

    def deepspeed_key(self) -> str:
        return "deepspeed"

    def cpu_smoke_overrides(self, steps: int) -> dict[str, Any]:
        """Overrides that shrink a recipe to a few steps of the tiny replica on a CPU."""
        raise NotImplementedError

    def entry_args(self, config_path: Path) -> list[str]:
        """What torchrun runs on every process, after its own options."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables the framework needs on every node."""
        return {}

    # -- checking ----------------------------------------------------------------------------------
    def check(self, config: dict[str, Any]) -> CheckResult:
        """Run the framework's own argument parser over `config`, in the framework's environment."""
        proc = subprocess.run(
            [str(self.python()), "-m", self.check_module],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        out = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not out:
            raise FinetuneError(
                f"Could not run {self.display_name}'s argument parser ({self.python()} -m {self.check_module}):\n"
                + proc.stderr[-3000:]
            )
        data = json.loads(out[-1])
        return CheckResult(data["unknown_keys"], data["errors"], data["valid_keys"], data.get("warnings", []))
