"""FINETUNE_CALLBACKS: trainer callbacks of the user's own, named module:Class, for either framework."""

from __future__ import annotations

import pytest

from finetune.frameworks.trainer.callbacks import extra_callbacks


def test_named_callbacks_are_built_and_a_bad_name_says_which():
    (built,) = extra_callbacks(" collections:OrderedDict ,")  # any class built without arguments
    assert type(built).__name__ == "OrderedDict"
    assert extra_callbacks("") == []
    with pytest.raises(SystemExit, match=r"FINETUNE_CALLBACKS=mine:Nope: cannot load 'mine:Nope' as module:Class"):
        extra_callbacks("mine:Nope")
