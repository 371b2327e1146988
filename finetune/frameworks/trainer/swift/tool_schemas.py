"""ms-swift's loader and template, with tool schemas given as JSON text kept verbatim (runs in the swift environment).

ms-swift removes every `null` from tool schemas (`remove_arrow_padding`), once while loading a dataset and again
in the template: Parquet and Arrow pad heterogeneous schemas with nulls, and it cannot tell padding from a value.
The prepared SWIFT files always hold `tools` as JSON text, which Arrow never pads, so every null there was written
by the user, and GLM-4.5's template renders it (`"required": null` is common in published tool schemas); without
this the model would be trained on a tool block that differs from the one it is served with. Tools that arrive as
structures (not JSON text) are still cleaned by the loader as ms-swift cleans them, so the template's second pass,
which would remove the user's nulls again, is left out. docs/format.md.
"""

from __future__ import annotations

import json


def keep_json_text_tool_schemas() -> None:
    import swift.template.base as template_base
    from swift.dataset.preprocessor.core import RowPreprocessor
    from swift.utils import TOOL_KEYS

    original = RowPreprocessor._normalize_tools
    if getattr(original, "_keeps_json_text", False):
        return

    def _normalize_tools(row):
        verbatim = {}
        for key in TOOL_KEYS:
            if isinstance(row.get(key), str):
                try:
                    tools = json.loads(row[key])
                except json.JSONDecodeError:
                    continue  # plain text: ms-swift's own handling
                if isinstance(tools, list):
                    verbatim[key] = tools
        original(row)
        row.update(verbatim)

    _normalize_tools._keeps_json_text = True
    RowPreprocessor._normalize_tools = staticmethod(_normalize_tools)
    template_base.remove_arrow_padding = lambda schema: schema  # the rows were cleaned (or kept) above
