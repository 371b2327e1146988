"""The training frameworks a recipe can run on, each behind the same small interface (`base.Framework`).

Launcher side: `llamafactory/` and `swift/` (the adapter and the `TrainingSetup` of their configs), `setup.py`
(the one description of a training layout). `trainer/` runs inside the frameworks' own environments. Adapters
are imported on first use, so that importing `finetune.frameworks.trainer` inside a framework environment pulls
in nothing of the launcher's.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from finetune.catalog import FRAMEWORKS
from finetune.errors import FinetuneError, suggest

if TYPE_CHECKING:
    from finetune.frameworks.base import Framework

_ADAPTERS = {"llamafactory": "LlamaFactory", "swift": "Swift"}  # finetune.frameworks.<name>.adapter.<class>


@cache
def get_framework(name: str) -> Framework:
    if name not in FRAMEWORKS:
        raise FinetuneError(
            f"Framework `{name}` is not supported; supported: {', '.join(FRAMEWORKS)}.{suggest(name, FRAMEWORKS)}"
        )
    module = importlib.import_module(f"finetune.frameworks.{name}.adapter")
    return getattr(module, _ADAPTERS[name])()
