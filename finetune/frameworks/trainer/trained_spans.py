"""What a framework's encoded example trains on, as text: shared by the framework renderers."""

from __future__ import annotations

IGNORE = -100  # the label both frameworks give tokens the loss skips


def spans(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded runs of consecutive trained labels. The labels, not the input ids, are decoded: a template
    may train another token than the one in the input (LLaMA-Factory's built-in GLM template puts
    `<|endoftext|>` where the text has `<|user|>`), and that is what the model learns."""
    out, current = [], []
    for _token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            current.append(label)
        elif current:
            out.append(tokenizer.decode(current))
            current = []
    if current:
        out.append(tokenizer.decode(current))
    return out


def rendered(tokenizer, encoded: dict, prefix: str = "") -> dict:
    """{"text": the whole sequence, "trained": its trained spans} of one encoded example."""
    ids = encoded[f"{prefix}input_ids"]
    return {"text": tokenizer.decode(ids), "trained": spans(tokenizer, ids, encoded[f"{prefix}labels"])}
