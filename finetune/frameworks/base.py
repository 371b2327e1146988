"""What the launcher needs from a training framework, and the bits all frameworks share."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.errors import FinetuneError, say
from finetune.frameworks.setup import TrainingSetup
from finetune.paths import REPO_ROOT, cache_dir

if TYPE_CHECKING:
    from finetune.prepare.datasets import PreparedDataset
    from finetune.prepare.lengths import LengthPolicy
    from finetune.recipes.recipe import Recipe, RecipeMeta


def site_packages(python: Path) -> list[Path]:
    """The site-packages folders of the environment `python` belongs to."""
    return sorted(python.parent.parent.glob("lib/python*/site-packages"))


def environment_stamp(python: Path) -> str:
    """Changes whenever packages are installed into or removed from `python`'s environment: a cache key part for
    answers that depend on what is installed there."""
    return ",".join(f"{site}:{site.stat().st_mtime_ns}" for site in site_packages(python))


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

    def python(self, *, must_exist: bool = True) -> Path:
        """The framework environment's interpreter (`FINETUNE_<NAME>_PYTHON` points elsewhere)."""
        override = os.environ.get(f"FINETUNE_{self.name.upper()}_PYTHON")
        python = Path(override) if override else REPO_ROOT / self.env_dir / "bin" / "python"
        if must_exist and not python.exists():
            how = f"FINETUNE_{self.name.upper()}_PYTHON={override}" if override else f"{self.env_dir}/"
            raise FinetuneError(
                f"No {self.display_name} environment at {how}: run `./setup.sh` first "
                f"(or set FINETUNE_{self.name.upper()}_PYTHON to an interpreter that has it)."
            )
        return python

    def bin(self, program: str, *, must_exist: bool = True) -> Path:
        return self.python(must_exist=must_exist).parent / program

    # -- what a config trains ----------------------------------------------------------------------
    def training_setup(
        self,
        config: dict[str, Any],
        meta: RecipeMeta,
        model_config: dict[str, Any],
        *,
        deepspeed_json: dict[str, Any] | None = None,
        deepspeed_named: str | None = None,
    ) -> TrainingSetup:
        """The training `config` describes, the framework's defaults filled in, for the model of `model_config`
        (config.json values). `deepspeed_json` is the JSON the config's DeepSpeed key names (None: a preset or
        no DeepSpeed); `deepspeed_named` is what the recipe wrote there, when rendering pointed the key at the
        run's own copy."""
        setup = self._training_setup(config, meta, model_config, deepspeed_json)
        named = config.get(self.deepspeed_key()) if deepspeed_named is None else deepspeed_named
        return replace(setup, deepspeed=replace(setup.deepspeed, source=named if isinstance(named, str) else None))

    def _training_setup(
        self, config: dict[str, Any], meta: RecipeMeta, model_config: dict[str, Any], ds: dict[str, Any] | None
    ) -> TrainingSetup:
        raise NotImplementedError

    def recipe_setup(self, recipe: Recipe) -> TrainingSetup:
        """The TrainingSetup of a recipe file as written (no overrides, not rendered), for its own model: what
        the catalog lists and what `prepare` measures sequences against."""
        from finetune.recipes.models import get_model

        named = recipe.config.get(self.deepspeed_key())
        file = self.deepspeed_file(named) if isinstance(named, str) and named else None  # a dict is inline
        ds = None
        if file:
            path = Path(file) if Path(file).is_absolute() else REPO_ROOT / file
            if not path.is_file():
                raise FinetuneError(f"{recipe.path}: deepspeed: {file} not found.")
            ds = json.loads(path.read_text())
        return self.training_setup(recipe.config, recipe.meta, get_model(recipe.meta.model).config, deepspeed_json=ds)

    def length_policy(self, config: dict[str, Any], meta: RecipeMeta) -> LengthPolicy:
        """What this framework does, with `config`, to a row longer than its length limit."""
        raise NotImplementedError

    # -- rendering ---------------------------------------------------------------------------------
    def render(
        self,
        config: dict[str, Any],
        meta: RecipeMeta,
        *,
        model: str,
        dataset: PreparedDataset | None,
        output_dir: Path,
    ) -> dict[str, Any]:
        """The config with model, dataset (None: keep the config's own dataset keys) and output pointed where
        this run needs them."""
        raise NotImplementedError

    def has_dataset(self, config: dict[str, Any]) -> bool:
        """Whether the config names its training data itself (then the recipe's default dataset is not used)."""
        return bool(config.get("dataset"))

    def check_dataset(self, config: dict[str, Any]) -> None:
        """Raise when the config names a dataset the framework will not find."""

    def deepspeed_key(self) -> str:
        return "deepspeed"

    def deepspeed_file(self, value: str) -> str | None:
        """The DeepSpeed JSON path a config value names, or None when it names no file (a preset)."""
        return value

    def cpu_smoke_overrides(self, steps: int, meta: RecipeMeta) -> dict[str, Any]:
        """Overrides that shrink a recipe to a few steps of the tiny replica on a CPU."""
        raise NotImplementedError

    def entry_args(self, config_path: Path, meta: RecipeMeta) -> list[str]:
        """What torchrun runs on every process, after its own options."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables the framework needs on every node: the entry modules live in this repository,
        so the framework environment must find it."""
        path = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)}

    def recipe_env(self, meta: RecipeMeta) -> dict[str, str]:
        """Environment variables one recipe needs on every process (settings its framework has no key for)."""
        return {}

    # -- after training ---------------------------------------------------------------------------
    def trained_weights(self, output_dir: Path, config: dict[str, Any]) -> Path:
        """Where a finished run left its weights (adapter or full model)."""
        return output_dir

    def merge_command(self, weights: Path, config: dict[str, Any], out: Path) -> list[str]:
        """The framework's own command that merges a LoRA adapter into its base model, written to `out`."""
        raise NotImplementedError

    # -- checking ----------------------------------------------------------------------------------
    def check_command(self, meta: RecipeMeta) -> str:
        """Which of the framework's commands the config is for (its argument classes differ)."""
        return "train"

    def check(self, config: dict[str, Any], meta: RecipeMeta) -> CheckResult:
        """Run the framework's own argument parser over `config`, in the framework's environment.

        Answers are cached by everything they depend on (the config, the DeepSpeed JSON it names, the checking
        code and the installed environment), so repeated launches and dry runs skip the framework's slow import.
        """
        return self.check_many([(config, meta)])[0]

    def check_many(self, items: list[tuple[dict[str, Any], RecipeMeta]]) -> list[CheckResult]:
        """`check` for several configs: the ones not cached yet go through one framework process together (its
        import is what takes the time), so checking every recipe costs one import, not one per recipe."""
        keys = [self._check_key(config, meta) for config, meta in items]
        results: dict[str, CheckResult] = {}
        todo: dict[str, tuple[dict[str, Any], RecipeMeta]] = {}
        for key, item in zip(keys, items, strict=True):
            cache = cache_dir() / "checks" / f"{key}.json"
            if cache.is_file():
                results[key] = CheckResult(**json.loads(cache.read_text()))
            else:
                todo.setdefault(key, item)
        if todo:
            what = "the config" if len(todo) == 1 else f"{len(todo)} configs"
            say(f"checking {what} with {self.display_name}'s own argument parser (once per config; about 10 s)...")
            fresh = self._run_checks(list(todo.values()))
            for key, result in zip(todo, fresh, strict=True):
                cache = cache_dir() / "checks" / f"{key}.json"
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(result.__dict__))
                os.replace(tmp, cache)
                results[key] = result
        return [results[key] for key in keys]

    def _check_key(self, config: dict[str, Any], meta: RecipeMeta) -> str:
        digest = hashlib.sha256()
        stable = {**config, "output_dir": "RUN_DIR"}  # a string to the parser; runs differ only there
        digest.update(json.dumps([self.check_command(meta), stable], sort_keys=True, default=str).encode())
        deepspeed = config.get(self.deepspeed_key())
        if isinstance(deepspeed, str) and Path(deepspeed).is_file():
            digest.update(Path(deepspeed).read_bytes())
        for module in (self.check_module, "finetune.frameworks.trainer.deepspeed_check"):
            digest.update((REPO_ROOT / (module.replace(".", "/") + ".py")).read_bytes())
        digest.update(environment_stamp(self.python()).encode())
        return digest.hexdigest()[:32]

    def _run_checks(self, items: list[tuple[dict[str, Any], RecipeMeta]]) -> list[CheckResult]:
        """The check module reads [{"command", "config"}, ...] and prints one JSON list, a verdict per config."""
        request = [{"command": self.check_command(meta), "config": config} for config, meta in items]
        proc = subprocess.run(
            [str(self.python()), "-m", self.check_module],
            input=json.dumps(request),
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
        return [
            CheckResult(data["unknown_keys"], data["errors"], data["valid_keys"], data.get("warnings", []))
            for data in json.loads(out[-1])
        ]
