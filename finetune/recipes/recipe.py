"""Recipes: one YAML file each under `recipes/<framework>/`, named `<model>_<method>_<gpus>x<gpu>.yaml`.

A recipe file is the framework's own config plus one `finetune:` block that the launcher reads and strips
(the model it is for, the cluster it is sized for, what its LoRA adapts). The `finetune:` block's schema
below is the single source of truth for those keys; the comment header at the top of the file is generated
from it (`finetune recipes --sync-headers`) so the two cannot drift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finetune.catalog import COMPONENTS, DEFAULT_GPU, ENGINES, FRAMEWORKS, GPUS, METHODS, MODELS
from finetune.errors import FinetuneError, suggest
from finetune.paths import RECIPES_DIR


class RecipeMeta(BaseModel):
    """The `finetune:` block of a recipe."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(description="One line: what the recipe trains.")
    model: Literal[MODELS]
    method: Literal[METHODS]
    engine: Literal[ENGINES] = Field(
        default="deepspeed", description="DeepSpeed ZeRO (Hugging Face trainer) or Megatron (Megatron-SWIFT)."
    )
    nodes: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1)
    gpu: Literal[tuple(GPUS)] = DEFAULT_GPU
    dataset: str = Field(
        description="Prepared dataset (data/prepared/NAME) the recipe trains on unless --dataset names another."
    )
    lora_adapts: list[str] | None = Field(
        default=None, description="Components the LoRA adapts (see finetune/recipes/components.py)."
    )
    lora_target_parameters: list[str] | None = Field(
        default=None,
        description=(
            "PEFT `target_parameters` for a framework with no option for them (LLaMA-Factory): the routed experts' "
            "fused `mlp.experts.gate_up_proj` / `mlp.experts.down_proj`, handed to PEFT by the repository's "
            "trainer entry (finetune/frameworks/trainer/expert_lora.py). ms-swift recipes write its own "
            "`target_parameters` instead."
        ),
    )
    needs: list[str] = Field(default_factory=list, description="What the run needs beyond the GPUs.")
    notes: list[str] = Field(default_factory=list)

    @field_validator("lora_adapts")
    @classmethod
    def _known_components(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in COMPONENTS:
                raise ValueError(f"unknown component `{name}`; known: {', '.join(COMPONENTS)}")
        return value

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass
class Recipe:
    """A recipe file, parsed: its id, metadata and the framework config it carries."""

    id: str
    path: Path
    framework: str
    meta: RecipeMeta
    config: dict[str, Any]
    header: str
    text: str = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def split_header(text: str) -> tuple[str, str]:
    """(leading comment block, rest of the file)."""
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    return "".join(lines[:n]), "".join(lines[n:])


def _format_validation_error(path: Path, err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key.{suggest(str(e['loc'][-1]), RecipeMeta.model_fields)}"
        problems.append(f"  finetune.{loc}: {msg}")
    return f"{path}: invalid `finetune:` block:\n" + "\n".join(problems)


def load_recipe_file(path: Path) -> Recipe:
    path = Path(path).resolve()
    framework = path.parent.name
    if framework not in FRAMEWORKS:
        raise FinetuneError(f"{path}: recipes live in recipes/<framework>/ with framework one of {FRAMEWORKS}.")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FinetuneError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "finetune" not in data:
        raise FinetuneError(f"{path}: a recipe needs a top-level `finetune:` block (model, method, nodes, ...).")
    meta_raw = data.pop("finetune")
    try:
        meta = RecipeMeta.model_validate(meta_raw)
    except ValidationError as exc:
        raise FinetuneError(_format_validation_error(path, exc)) from exc
    if meta.lora_target_parameters and framework != "llamafactory":
        raise FinetuneError(
            f"{path}: finetune.lora_target_parameters is for LLaMA-Factory, which has no key for them; "
            f"{framework} recipes name them in the framework's own config (ms-swift: `target_parameters`)."
        )
    header, _ = split_header(text)
    try:
        rel = path.relative_to(RECIPES_DIR)
        recipe_id = f"{rel.parent.as_posix()}/{path.stem}"
    except ValueError:
        recipe_id = f"{framework}/{path.stem}"
    return Recipe(id=recipe_id, path=path, framework=framework, meta=meta, config=data, header=header, text=text)


def recipe_paths() -> list[Path]:
    return sorted(p for d in FRAMEWORKS for p in (RECIPES_DIR / d).glob("*.yaml"))


def all_recipes() -> list[Recipe]:
    return [load_recipe_file(p) for p in recipe_paths()]


def resolve_recipe(ref: str) -> Recipe:
    """A recipe by id (`llamafactory/glm45-air_lora_4xh100`), by unique name, or by file path."""
    candidate = Path(ref)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_recipe_file(candidate)
    ref = ref.removesuffix(".yaml")
    ids = {f"{p.parent.name}/{p.stem}": p for p in recipe_paths()}
    if ref in ids:
        return load_recipe_file(ids[ref])
    by_name = [p for rid, p in ids.items() if rid.split("/", 1)[1] == ref]
    if len(by_name) == 1:
        return load_recipe_file(by_name[0])
    if len(by_name) > 1:
        options = ", ".join(f"{p.parent.name}/{p.stem}" for p in by_name)
        raise FinetuneError(f"Recipe `{ref}` exists for several frameworks: {options}. Name one of them.")
    raise FinetuneError(f"No recipe `{ref}`.{suggest(ref, ids)} `python -m finetune recipes` lists them.")
