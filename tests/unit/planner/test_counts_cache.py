"""The parameter-count cache is written by every node of a job at the same moment (each plans before it starts):
two writers must not trip over each other's temporary file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from finetune.recipes.models import get_model


def _count(cache: str, barrier, errors) -> None:
    import os

    os.environ["FINETUNE_CACHE"] = cache
    from finetune.planner.params import count_params

    replace = Path.replace

    def replace_after_the_other_wrote(self, target):  # both writers hold a written temporary file, then move it
        barrier.wait(timeout=60)
        return replace(self, target)

    Path.replace = replace_after_the_other_wrote
    config = {**get_model("glm-4.5-air").config, "num_hidden_layers": 3}  # not among the shipped counts
    try:
        count_params(config)
    except Exception as error:  # reported to the parent: a failed node
        errors.put(repr(error))


def test_two_nodes_counting_at_once_both_succeed(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_count, args=(str(tmp_path), barrier, errors)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert errors.empty(), errors.get()
    assert len(list((tmp_path / "plan").glob("params-*.json"))) == 1 and not list((tmp_path / "plan").glob("*.tmp"))
