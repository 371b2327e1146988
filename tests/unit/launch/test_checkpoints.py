"""A checkpoint a resume may start from: whole weights, its trainer state, and the optimizer state of every rank."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from finetune.launch.checkpoints import incomplete_reason, latest_complete


def _checkpoint(root, step: int, *, ranks: int = 2, deepspeed: bool = True, optimizer: bool = True):
    """A checkpoint as the Hugging Face trainer writes one: DeepSpeed's tag folder with per-rank shards, or
    optimizer.pt without DeepSpeed, or neither (save_only_model)."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.zeros(4)}, str(folder / "model.safetensors"))
    for rank in range(ranks):
        (folder / f"rng_state_{rank}.pth").write_bytes(b"rng")
    if deepspeed and optimizer:
        tag = folder / f"global_step{step}"
        tag.mkdir()
        (folder / "latest").write_text(tag.name)
        for rank in range(ranks):
            (tag / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"adam")
            (tag / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").write_bytes(b"model")
    elif optimizer:
        (folder / "optimizer.pt").write_bytes(b"adam")
    return folder


def test_whole_checkpoints_pass(tmp_path):
    assert incomplete_reason(_checkpoint(tmp_path / "ds", 4)) is None
    assert incomplete_reason(_checkpoint(tmp_path / "ddp", 4, deepspeed=False)) is None


def test_a_rank_whose_shard_is_missing_or_empty_makes_it_incomplete(tmp_path):
    checkpoint = _checkpoint(tmp_path, 4, ranks=3)
    (checkpoint / "global_step4" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    assert incomplete_reason(checkpoint) == "DeepSpeed optimizer shards of rank(s) 1 missing in global_step4/"
    checkpoint = _checkpoint(tmp_path / "last", 4, ranks=3)
    (checkpoint / "global_step4" / "zero_pp_rank_2_mp_rank_00_optim_states.pt").unlink()  # the last rank's too
    assert "rank(s) 2 missing" in incomplete_reason(checkpoint)
    checkpoint = _checkpoint(tmp_path / "empty", 4)
    (checkpoint / "global_step4" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"")
    assert incomplete_reason(checkpoint) == "empty DeepSpeed shard(s) zero_pp_rank_0_mp_rank_00_optim_states.pt"


def test_a_model_only_checkpoint_is_not_resumed_from(tmp_path):
    output = tmp_path / "output"
    older = _checkpoint(output, 2)
    _checkpoint(output, 4, optimizer=False)  # save_only_model: true
    checkpoint, skipped = latest_complete(output)
    assert checkpoint == older
    assert [s.path.name for s in skipped] == ["checkpoint-4"] and "holds the model only" in skipped[0].reason
