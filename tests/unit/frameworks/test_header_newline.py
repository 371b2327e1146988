"""ms-swift's label fix: the newline after `<|assistant|>` is trained wherever the turn it opens is trained."""

from __future__ import annotations

from finetune.frameworks.trainer.swift.header_newline import IGNORED, unmask_header_newlines

A, NL, X = 7, 10, 42  # <|assistant|>, "\n", any other token


def test_the_newline_of_a_trained_turn_is_trained_and_nothing_else_changes():
    ids = [1, A, NL, X, X, 2, A, NL, X]
    labels = [IGNORED, IGNORED, IGNORED, X, X, IGNORED, IGNORED, IGNORED, IGNORED]  # the second turn is context
    scale = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    encoded = {"input_ids": ids, "labels": labels, "loss_scale": scale}
    unmask_header_newlines(encoded, A, NL)
    assert encoded["labels"] == [IGNORED, IGNORED, NL, X, X, IGNORED, IGNORED, IGNORED, IGNORED]
    assert encoded["loss_scale"] == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert encoded["input_ids"] == ids


def test_generation_prompts_without_labels_are_left_alone():
    encoded = {"input_ids": [1, A, NL], "labels": None}
    unmask_header_newlines(encoded, A, NL)
    assert encoded == {"input_ids": [1, A, NL], "labels": None}
