"""The definition of derived recipes (`recipes/variants.yaml`): which base recipes each model gets a copy of.

A family names base recipes of one model and the models of the same shapes that get a copy of each; this module
reads it and names the copies by the catalog rule (`<model>_<method>_<cluster>`); `check_same_shapes` refuses a
model whose config.json differs from the base model's in more than the context length, since a copy inherits the
base's batch, LoRA and parallel layout, sized for the base's shapes. `generate.py` writes the copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune.catalog import FRAMEWORKS, MODELS
from finetune.errors import FinetuneError
from finetune.paths import RECIPES_DIR
from finetune.recipes.models import ModelSpec

VARIANTS_FILE = RECIPES_DIR / "variants.yaml"
CONTEXT_KEYS = ("max_position_embeddings",)  # the only config.json keys a derived model may change


class Family(BaseModel):
    """Base recipes of one model and the models that get a copy of each."""

    model_config = ConfigDict(extra="forbid")

    name: str
    about: str = ""
    models: list[str] = Field(min_length=1)
    bases: list[str] = Field(min_length=1, description="Recipe ids (`swift/glm45_lora_16xh100`).")
    keep: list[str] = Field(default_factory=list, description="Phrases about the base model that stay as written.")


class Definition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    families: list[Family]


def recipe_prefix(model: str) -> str:
    """The model's part of a recipe name: `glm-4.5-air` -> `glm45-air`, `glm-4.7` -> `glm47`."""
    return model.replace("-", "", 1).replace(".", "")


@dataclass(frozen=True)
class Variant:
    """One derived recipe: `base` (a recipe id) copied for `model`."""

    base: str
    model: str
    family: Family

    @property
    def framework(self) -> str:
        return self.base.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The base's name with the model's part swapped: `glm45_lora_16xh100` -> `glm47_lora_16xh100`."""
        _, rest = self.base.split("/", 1)[1].split("_", 1)
        return f"{recipe_prefix(self.model)}_{rest}"

    @property
    def id(self) -> str:
        return f"{self.framework}/{self.name}"

    def path(self, recipes_dir: Path = RECIPES_DIR) -> Path:
        return recipes_dir / self.framework / f"{self.name}.yaml"


def check_same_shapes(base: ModelSpec, model: ModelSpec) -> None:
    """A copy keeps the base's sizing, so the model must have the base model's shapes."""
    keys = (set(base.config) | set(model.config)) - set(CONTEXT_KEYS)
    differs = sorted(k for k in keys if base.config.get(k) != model.config.get(k))
    if differs:
        raise FinetuneError(
            f"{VARIANTS_FILE}: {model.name} cannot inherit {base.name}'s recipes: its config.json differs in "
            f"{', '.join(differs)} (recipes sized for one model's shapes do not carry over)."
        )


def load_definition(path: Path = VARIANTS_FILE) -> Definition:
    try:
        return Definition.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise FinetuneError(f"{path}: {exc}") from exc


def all_variants(path: Path = VARIANTS_FILE) -> list[Variant]:
    """Every derived recipe the definition asks for, in its order (family, model, base); checked."""
    families = load_definition(path).families
    variants = []
    for family in families:
        for model in family.models:
            if model not in MODELS:
                raise FinetuneError(f"{path}: unknown model `{model}` in {family.name}; known: {', '.join(MODELS)}.")
            for base in family.bases:
                if base.split("/", 1)[0] not in FRAMEWORKS or "_" not in base.partition("/")[2]:
                    raise FinetuneError(f"{path}: `{base}` is not a recipe id (<framework>/<name>).")
                variants.append(Variant(base=base, model=model, family=family))
    ids = [v.id for v in variants]
    if len(set(ids)) != len(ids) or set(ids) & {base for family in families for base in family.bases}:
        raise FinetuneError(f"{path}: two definitions name the same recipe, or a base is also derived.")
    return variants
