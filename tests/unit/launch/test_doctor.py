"""`finetune doctor` checks a node for real and says how to fix what is wrong."""

from __future__ import annotations

from finetune.launch.doctor import check_network, check_shared_storage, check_vllm, run_checks
from finetune.recipes.recipe import resolve_recipe
from finetune.serving.engine import EngineInstall
from tests.conftest import run_cli


def test_doctor_on_this_machine(tmp_path):
    out = run_cli("doctor", "llamafactory/glm45-air_lora_4xh100", "--runs-root", str(tmp_path))
    findings = {f.check: f for f in run_checks(resolve_recipe("llamafactory/glm45-air_lora_4xh100"), tmp_path, 1)}
    assert findings["LLaMA-Factory environment"].status in ("ok", "warn")  # imports work here
    assert findings["run storage"].status == "ok" and findings["disk"].status == "ok"
    if findings["GPUs"].status == "fail":  # a CPU machine: doctor fails the node and says why
        assert out.returncode == 1 and "no NVIDIA GPU visible" in out.stdout
    assert "how to fix" in out.stdout


def test_vllm_is_checked_for_recipes_that_roll_out_with_it(tmp_path):
    grpo = {f.check: f for f in run_checks(resolve_recipe("swift/glm45-air_grpo_4xh100"), tmp_path, 1)}
    assert grpo["vLLM"].status == "ok" and "CPU build" in grpo["vLLM"].detail  # setup.sh installed it here
    lora = {f.check for f in run_checks(resolve_recipe("swift/glm45-air_lora_4xh100"), tmp_path, 1)}
    assert "vLLM" not in lora
    missing = check_vllm(EngineInstall("vllm", None))
    assert missing.status == "fail" and missing.fix == "run ./setup.sh swift"


def test_wrong_network_interface_is_named(monkeypatch):
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib-does-not-exist")
    finding = check_network()
    assert finding.status == "fail" and "ib-does-not-exist" in finding.detail and finding.fix
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "lo")
    assert check_network().status == "ok"


def test_unwritable_run_storage_fails(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    finding = check_shared_storage(blocked, 1)
    assert finding.status == "fail" and "not writable" in finding.detail
    assert check_shared_storage(tmp_path / "runs", 2).status == "warn"  # only this host has been seen


def test_the_model_download_is_counted_where_the_framework_puts_it(tmp_path, monkeypatch):
    import json
    import shutil

    from finetune.launch.doctor import check_download

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.delenv("USE_HF", raising=False)
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    lf, swift = resolve_recipe("llamafactory/glm45_lora_16xh100"), resolve_recipe("swift/glm45_lora_16xh100")
    found = check_download(lf)
    assert f"zai-org/GLM-4.5 is not in {tmp_path / 'hf'}: the first launch downloads about 717 GB" in found.detail
    roomy = shutil.disk_usage(tmp_path).free >= 717e9
    assert (found.status, bool(found.fix)) == (("ok", False) if roomy else ("fail", True))
    assert str(tmp_path / "ms") in check_download(swift).detail  # ms-swift downloads from ModelScope
    snapshot = tmp_path / "ms" / "zai-org" / "GLM-4.5"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    assert check_download(swift).detail.startswith("zai-org/GLM-4.5 is not in")  # a shard is missing
    (snapshot / "model-1.safetensors").write_bytes(b"")
    assert check_download(swift).detail == f"none: zai-org/GLM-4.5 is in {tmp_path / 'ms'}"
    assert check_download(lf, str(snapshot)).detail == f"none: --model {snapshot} is a local folder"


def test_offloaded_states_must_fit_the_nodes_ram_and_pinned_ones_half_of_it(tmp_path):
    import json

    from finetune.launch.doctor import check_host_ram
    from finetune.paths import REPO_ROOT

    full = resolve_recipe("swift/glm45-air_full_4xh100")  # ~1,791 GiB of offloaded states per node
    tib = 1024**4
    assert check_host_ram(full, ram_bytes=4 * tib).status == "ok"  # unpinned (zero3_offload.json)
    assert check_host_ram(full, ram_bytes=1.5 * tib).status == "fail"  # more than the node has
    pinned = json.loads((REPO_ROOT / "recipes/deepspeed/zero3_offload.json").read_text())
    for section in ("offload_param", "offload_optimizer"):
        pinned["zero_optimization"][section]["pin_memory"] = True
    path = tmp_path / "pinned.json"
    path.write_text(json.dumps(pinned))
    found = check_host_ram(full, ram_bytes=2.5 * tib, overrides=[f"deepspeed={path}"])
    assert found.status == "fail" and "pinning more than 50% of RAM" in found.detail and "pin_memory false" in found.fix
    assert check_host_ram(full, ram_bytes=8 * tib, overrides=[f"deepspeed={path}"]).status == "ok"
    assert check_host_ram(resolve_recipe("swift/glm45-air_lora_4xh100")) is None  # nothing offloaded
