"""The trainers silence exactly the warnings known to be harmless, and nothing else."""

from __future__ import annotations

import warnings

import pytest

from finetune.frameworks.trainer.known_warnings import filter_known_warnings


@pytest.mark.parametrize(
    "category, message, silenced",
    [
        (FutureWarning, "`torch.distributed.reduce_scatter_tensor` is deprecated. Please use ...", True),
        (FutureWarning, "`torch.distributed.all_gather_into_tensor` is deprecated. Please use ...", True),
        (UserWarning, "'pin_memory' argument is set as true but no accelerator is found, then ...", True),
        (FutureWarning, "`torch.distributed.all_reduce` is deprecated", False),
        (UserWarning, "`torch.distributed.reduce_scatter_tensor` is deprecated", False),  # another category
        (FutureWarning, "something else entirely", False),
    ],
)
def test_only_the_known_messages_are_silenced(category, message, silenced):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_known_warnings()
        warnings.warn(message, category, stacklevel=1)
    assert (len(caught) == 0) == silenced
