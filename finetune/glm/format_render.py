"""Rendering prepared data through a framework, as its trainer will: its own loader and template, in its own
environment (one process for many datasets). Used by the format check (finetune/glm/format_check.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT

LF_DATA_ARGS = (
    "template",
    "enable_thinking",
    "mask_history",
    "preserve_thinking",
    "train_on_prompt",
    "tool_format",
    "default_system",
)
# ms-swift's arguments that its argument classes turn into the template and its loss scale (rlhf_type and
# multi_turn_scheduler choose the default loss scale; disable_ignore_empty_think keeps the empty think block trained)
SWIFT_TEMPLATE_ARGS = (
    "template",
    "system",
    "agent_template",
    "loss_scale",
    "response_prefix",
    "enable_thinking",
    "preserve_thinking",
    "add_non_thinking_prefix",
    "disable_ignore_empty_think",
    "rlhf_type",
    "multi_turn_scheduler",
)


def template_settings(framework: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config keys that change what the framework renders and trains."""
    keys = LF_DATA_ARGS if framework == "llamafactory" else SWIFT_TEMPLATE_ARGS
    settings = {k: config[k] for k in keys if config.get(k) is not None}
    settings.setdefault("template", "glm4_moe" if framework == "llamafactory" else "glm4_5")
    return settings


def _llamafactory_item(settings: dict[str, Any], dataset) -> dict[str, Any]:
    return {
        "dir": str(dataset.llamafactory_dir),
        "name": dataset.llamafactory_train,
        "kind": dataset.kind,
        "template": settings["template"],
        "data_args": {k: v for k, v in settings.items() if k != "template"},
    }


def _swift_item(settings: dict[str, Any], dataset) -> dict[str, Any]:
    return {
        "path": str(dataset.swift_train),
        "kind": dataset.kind,
        "command": "rlhf" if "rlhf_type" in settings else "sft",
        "arguments": settings,
    }


def render_many(framework, tokenizer_dir: Path, jobs: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    """What each (template settings, PreparedDataset) job renders to, in one framework process: {"rows": [...]}
    (and for ms-swift "columns", what its loader kept)."""
    if framework.name == "llamafactory":
        request = {"model": str(tokenizer_dir), "datasets": [_llamafactory_item(*job) for job in jobs]}
        module, key = "finetune.frameworks.trainer.llamafactory.render", "datasets"
    else:
        request = {"tokenizer": str(tokenizer_dir), "files": [_swift_item(*job) for job in jobs]}
        module, key = "finetune.frameworks.trainer.swift.render", "files"
    proc = subprocess.run(
        [str(framework.python()), "-m", module],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"},
    )
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out:
        raise FinetuneError(
            f"{framework.display_name} could not render the format check data ({module}):\n" + proc.stderr[-3000:]
        )
    return json.loads(out[-1])[key]
