"""`--nvme-path`: where DeepSpeed swaps to NVMe, written into the run's DeepSpeed JSON, recorded for resumes, and
checked on the node before anything starts."""

from __future__ import annotations

import json

import pytest

from finetune.errors import FinetuneError
from finetune.launch.doctor import check_nvme_space
from finetune.launch.plan import DEEPSPEED_NAME, LaunchRequest, plan_launch
from finetune.launch.record import launch_record
from finetune.launch.run import LaunchOptions, run
from finetune.recipes.recipe import resolve_recipe

NVME_RECIPE = "swift/glm45_full_16xh100"


def _plan(tmp_path, nvme_path=None, recipe=NVME_RECIPE):
    req = LaunchRequest(recipe=recipe, nnodes=2, master_addr="node0", run_dir=tmp_path / "run", nvme_path=nvme_path)
    return plan_launch(req, check=False)


def test_the_nvme_path_goes_into_the_runs_deepspeed_json_and_its_record(tmp_path):
    plan = _plan(tmp_path, tmp_path / "nvme")
    zero = json.loads(plan.files[DEEPSPEED_NAME])["zero_optimization"]
    assert zero["offload_param"]["nvme_path"] == zero["offload_optimizer"]["nvme_path"] == str(tmp_path / "nvme")
    assert launch_record(plan)["nvme_path"] == str(tmp_path / "nvme")
    default = json.loads(_plan(tmp_path).files[DEEPSPEED_NAME])["zero_optimization"]
    assert default["offload_param"]["nvme_path"] == "/local_nvme"  # the JSON's own, when not given


def test_a_missing_nvme_folder_stops_the_launch_before_anything_starts(tmp_path):
    with pytest.raises(
        FinetuneError, match=r"swaps to NVMe at .*/nvme, which is not a folder on this node.*--nvme-path"
    ):
        run(_plan(tmp_path, tmp_path / "nvme"), LaunchOptions())
    assert not (tmp_path / "run").exists()


def test_nvme_path_for_a_recipe_that_does_not_swap_is_refused(tmp_path):
    with pytest.raises(FinetuneError, match="offloads nothing to NVMe"):
        _plan(tmp_path, tmp_path, recipe="llamafactory/glm45_lora_16xh100")


def test_doctor_checks_the_nvme_folder_and_its_space(tmp_path):
    recipe = resolve_recipe(NVME_RECIPE)
    missing = check_nvme_space(recipe, tmp_path / "absent")
    assert missing.status == "fail" and "is not a folder on this node" in missing.detail
    found = check_nvme_space(recipe, tmp_path)
    assert f"{tmp_path}:" in found.detail and "DeepSpeed swaps about 2,957 GiB per node there" in found.detail
    assert check_nvme_space(resolve_recipe("llamafactory/glm45_lora_16xh100"), None) is None
