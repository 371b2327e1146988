"""The training frameworks a recipe can run on, each behind the same small interface."""

from __future__ import annotations

from finetune.errors import FinetuneError
from finetune.frameworks.base import Framework
from finetune.frameworks.llamafactory import LlamaFactory
from finetune.frameworks.swift import Swift

_FRAMEWORKS: dict[str, Framework] = {fw.name: fw for fw in (LlamaFactory(), Swift())}


def get_framework(name: str) -> Framework:
    if name not in _FRAMEWORKS:
        raise FinetuneError(f"Framework `{name}` is not supported yet; supported: {', '.join(_FRAMEWORKS)}.")
    return _FRAMEWORKS[name]
