"""The GLM MoE family (glm4_moe) as described in `recipes/models/*.json` (the checkpoints' real config.json values)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from finetune.catalog import CHAT_FORMAT_NAMES
from finetune.errors import FinetuneError, suggest
from finetune.glm.chat_formats import ChatFormat, chat_format
from finetune.paths import MODELS_DIR


class ModelSpec(BaseModel):
    """One model of the family: its hub ids and its config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display_name: str
    hf_id: str
    checkpoints: dict[str, str]
    checkpoint_params: int  # parameters stored in the hub checkpoint (MTP layer included): 2 bytes each to download
    chat_format: Literal[CHAT_FORMAT_NAMES]  # its chat template's family (finetune/glm/chat_formats.py)
    notes: str = ""
    config: dict[str, Any]

    @property
    def chat(self) -> ChatFormat:
        return chat_format(self.chat_format)

    @property
    def context(self) -> int:
        """The longest sequence the checkpoint was built for (max_position_embeddings)."""
        return int(self.config["max_position_embeddings"])

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
