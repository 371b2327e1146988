"""The GLM-4.5 family as described in `recipes/models/*.json` (the checkpoints' real config.json values)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from finetune.errors import FinetuneError, suggest
from finetune.paths import MODELS_DIR


class ModelSpec(BaseModel):
    """One model of the family: its hub ids and its config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display_name: str
    hf_id: str
    checkpoints: dict[str, str]
    checkpoint_params: int  # parameters stored in the hub checkpoint (MTP layer included): 2 bytes each to download
    notes: str = ""
    config: dict[str, Any]

    @property
    def n_dense_layers(self) -> int:
        return int(self.config["first_k_dense_replace"])


@cache
def all_models() -> dict[str, ModelSpec]:
    """Every model description shipped under `recipes/models/`, by name."""
    specs = {}
    for path in sorted(MODELS_DIR.glob("*.json")):
        spec = ModelSpec.model_validate(json.loads(path.read_text()))
        if spec.name != path.stem:
            raise FinetuneError(f"{path}: name `{spec.name}` must equal the file name `{path.stem}`.")
        specs[spec.name] = spec
    return specs


def get_model(name: str) -> ModelSpec:
    models = all_models()
    if name not in models:
        raise FinetuneError(f"Unknown model `{name}`; known: {', '.join(models)}.{suggest(name, models)}")
    return models[name]
