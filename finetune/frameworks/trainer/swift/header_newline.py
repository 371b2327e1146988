"""ms-swift's `glm4_5` template, with the newline after `<|assistant|>` trained (runs in the swift environment).

ms-swift writes GLM-4.5's conversations token for token as the official template does, but counts the newline
that follows `<|assistant|>` as prompt. A served model's prompt ends at `<|assistant|>` (the official generation
prompt), so that newline is the first token it generates, and a fine-tune that never trained it may not write it
(the replica, trained from random weights, then starts its reply mid-think). This turns the label of that one token
on wherever the turn it opens is trained; the text and every other label stay ms-swift's own. docs/format.md.
"""

from __future__ import annotations

from typing import Any

ASSISTANT, NEWLINE = "<|assistant|>", "\n"
IGNORED = -100


def unmask_header_newlines(encoded: dict[str, Any], assistant_id: int, newline_id: int) -> None:
    ids, labels = encoded.get("input_ids"), encoded.get("labels")
    if not ids or labels is None:
        return
    scale = encoded.get("loss_scale")
    for i in range(len(ids) - 2):
        if ids[i] == assistant_id and ids[i + 1] == newline_id and labels[i + 1] == IGNORED != labels[i + 2]:
            labels[i + 1] = newline_id
            if scale is not None:
                scale[i + 1] = scale[i + 2]


def train_header_newline() -> None:
    from swift.template.templates.glm import GLM4_5Template

    original = GLM4_5Template._encode
    if getattr(original, "_trains_header_newline", False):
        return

    def _encode(self, inputs):
        encoded = original(self, inputs)
        newline = self.tokenizer.encode(NEWLINE, add_special_tokens=False)
        if len(newline) == 1:
            unmask_header_newlines(encoded, self.tokenizer.convert_tokens_to_ids(ASSISTANT), newline[0])
        return encoded

    _encode._trains_header_newline = True
    GLM4_5Template._encode = _encode
