"""wandb tracking without training: where the options come from, what a launch changes, secrets, the run id a
run directory keeps, and reading an offline run back."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml

from finetune.errors import FinetuneError
from finetune.launch.dry_run import format_dry_run
from finetune.launch.execute import start
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.tracking import MANIFEST_ENV
from finetune.tracking.decide import decide_tracking
from finetune.tracking.identity import RunIdentity, claim_identity, read_identity
from finetune.tracking.offline_reader import offline_run_dirs, read_offline_run
from finetune.tracking.redaction import MASK, is_secret_name, mask_stream, redact, secrets_in
from finetune.tracking.settings import TrackingFlags, UserConfig, WandbFileSettings, resolve_settings
from finetune.tracking.start import start_tracking
from tests.conftest import REPO_ROOT

LF = "llamafactory/glm45-air_lora_4xh100"
WANDB_VARS = tuple("WANDB_PROJECT WANDB_ENTITY WANDB_RUN_GROUP WANDB_TAGS WANDB_MODE WANDB_NAME WANDB_RUN_ID".split())


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No wandb variables or user config file of the machine running the tests."""
    for name in WANDB_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FINETUNE_CONFIG", raising=False)


# -- settings ------------------------------------------------------------------------------------------------


def test_off_unless_a_project_is_set():
    assert not resolve_settings(TrackingFlags(), {}, UserConfig()).enabled
    assert resolve_settings(TrackingFlags(project="p"), {}, UserConfig()).enabled


def test_flags_win_over_environment_which_wins_over_the_user_file():
    user = UserConfig(wandb=WandbFileSettings(project="file", entity="file-team", tags=["f"], mode="offline"))
    env = {"WANDB_PROJECT": "env", "WANDB_TAGS": "e1,e2"}
    s = resolve_settings(TrackingFlags(tags="a, b"), env, user)
    assert (s.project, s.entity, s.tags, s.mode) == ("env", "file-team", ["a", "b"], "offline")
    s = resolve_settings(TrackingFlags(project="flag", mode="online"), env, user)
    assert (s.project, s.tags, s.mode) == ("flag", ["e1", "e2"], "online")


def test_no_wandb_and_disabled_mode_turn_it_off_whatever_else_says():
    assert not resolve_settings(TrackingFlags(project="p", disabled=True), {}, UserConfig()).enabled
    off = resolve_settings(TrackingFlags(), {"WANDB_PROJECT": "p", "WANDB_MODE": "disabled"}, UserConfig())
    assert not off.enabled and off.explicitly_disabled
    assert resolve_settings(TrackingFlags(), {"WANDB_MODE": "dryrun"}, UserConfig()).mode == "offline"


def test_user_config_file_is_read_and_unknown_keys_are_refused_with_a_suggestion(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("FINETUNE_CONFIG", str(path))
    path.write_text(yaml.safe_dump({"wandb": {"project": "glm45", "tags": "x,y", "mode": "offline"}}))
    s = resolve_settings(TrackingFlags())
    assert (s.enabled, s.project, s.tags, s.mode) == (True, "glm45", ["x", "y"], "offline")
    path.write_text(yaml.safe_dump({"wandb": {"projet": "glm45"}}))
    with pytest.raises(FinetuneError, match=r"wandb.projet: unknown key. Did you mean `project`\?"):
        resolve_settings(TrackingFlags())
    path.write_text(yaml.safe_dump({"wandbb": {}}))
    with pytest.raises(FinetuneError, match=r"Did you mean `wandb`\?"):
        resolve_settings(TrackingFlags())
    path.unlink()
    with pytest.raises(FinetuneError, match="FINETUNE_CONFIG=.*no such file"):
        resolve_settings(TrackingFlags())


# -- secrets -------------------------------------------------------------------------------------------------


def test_secret_names_are_told_from_settings_that_mention_tokens():
    secrets = "WANDB_API_KEY HF_TOKEN MY_SECRET DB_PASSWORD hub_token apiKey swanlab_secret AWS_SECRET_ACCESS_KEY"
    for name in [*secrets.split(), "GH_ACCESSTOKEN"]:
        assert is_secret_name(name), name
    settings = (
        "max_new_tokens TOKENIZERS_PARALLELISM SSH_KEY_PATH moe_token_dispatcher_type include_num_input_tokens_seen"
    )
    for name in [*settings.split(), "add_special_tokens", "keys"]:
        assert not is_secret_name(name), name


def test_redact_masks_secret_keys_and_environment_secret_values():
    secret = "s3cr3t-value-of-the-environment"
    record = {
        "hub_token": "abc",
        "pad_token_id": 3,
        "command": ["x", f"--key={secret}"],
        "nested": {"url": f"https://u:{secret}@host"},
        "max_new_tokens": 5,
    }
    out = redact(record, [secret])
    assert out["hub_token"] == MASK and out["pad_token_id"] == 3 and out["max_new_tokens"] == 5
    assert secret not in json.dumps(out)
    assert secrets_in(record, [secret]) == ["hub_token", "command[1]", "nested.url"]


def test_log_stream_is_masked_across_chunk_boundaries():
    secret = "SENTINEL-stream-0123456789"
    text = f"start {secret} middle {secret}end".encode()
    for size in (1, 3, 7, 64):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        out = b"".join(mask_stream(iter(chunks), [secret]))
        assert out == f"start {MASK} middle {MASK}end".encode(), size


def test_a_config_holding_a_secret_is_refused(air_replica, tmp_path, monkeypatch):
    base = dict(recipe=LF, model=str(air_replica), run_dir=tmp_path / "r", nnodes=1, nproc_per_node=1)
    with pytest.raises(FinetuneError, match=r"holds a secret \(hub_token\).*through the environment"):
        plan_launch(LaunchRequest(**base, overrides=["hub_token=hf_abcdefgh"]), check=False)
    monkeypatch.setenv("HF_TOKEN", "hf_SENTINEL_refused_0123456789")
    with pytest.raises(FinetuneError, match=r"holds a secret \(run_name\)"):
        plan_launch(LaunchRequest(**base, overrides=["run_name=hf_SENTINEL_refused_0123456789"]), check=False)


def _plan(replica, run_dir, **request):
    """The plan of a one-process launch of LF on the replica (the framework's parser is not asked)."""
    request = LaunchRequest(recipe=LF, model=str(replica), run_dir=run_dir, nnodes=1, nproc_per_node=1, **request)
    return plan_launch(request, check=False)


def _decide(flags, run_dir, *, config, model="glm-4.5-air"):
    return decide_tracking(flags, model=model, method="lora", dataset="d", config=config, run_dir=run_dir)


# -- what a launch changes -----------------------------------------------------------------------------------


def test_tracked_launch_reports_to_wandb_and_sets_the_wandb_environment(air_replica, tmp_path):
    flags = TrackingFlags(project="glm45", entity="team", tags="a,b", mode="offline")
    plan = _plan(air_replica, tmp_path / "myrun", tracking=flags)
    assert plan.config["report_to"] == ["wandb"] and plan.config["include_num_input_tokens_seen"] is True
    assert "run_name" not in plan.config  # the name stays in the environment: the config is the same on every node
    env = plan.env
    assert env["WANDB_PROJECT"] == "glm45" and env["WANDB_ENTITY"] == "team" and env["WANDB_TAGS"] == "a,b"
    assert env["WANDB_RUN_GROUP"] == "myrun" and env["WANDB_MODE"] == "offline" and env["WANDB_RESUME"] == "allow"
    assert env["WANDB_DIR"] == str(tmp_path / "myrun") and len(env["WANDB_RUN_ID"]) == 8
    assert env["WANDB_NAME"].startswith("glm-4.5-air-lora-sample_chat-")
    assert "export WANDB_PROJECT=glm45" in format_dry_run(plan)
    untracked = _plan(air_replica, tmp_path / "other")
    assert untracked.config["report_to"] == "none" and not any(k.startswith("WANDB_") for k in untracked.env)


def test_no_wandb_removes_wandb_from_a_config_that_asks_for_it(air_replica, tmp_path):
    flags = TrackingFlags(project="p", disabled=True)
    plan = _plan(air_replica, tmp_path / "r", overrides=["report_to=[wandb, tensorboard]"], tracking=flags)
    assert plan.config["report_to"] == ["tensorboard"] and plan.env["WANDB_MODE"] == "disabled"


def test_a_run_directory_keeps_its_wandb_run_for_every_later_launch(tmp_path):
    run_dir = tmp_path / "run"
    fresh = _decide(TrackingFlags(project="p", mode="offline"), run_dir, config={"report_to": "none"})
    held = claim_identity(run_dir, fresh.identity)
    assert held == fresh.identity == read_identity(run_dir)
    other = RunIdentity(id="zzzzzzzz", name="other", project="p", group="g")
    assert claim_identity(run_dir, other) == held  # a second node (or a resume) adopts the first one's run

    # a resume without any flag: same id, name, group, mode, config keys; WANDB_RESUME lets wandb continue it
    again = _decide(None, run_dir, config={"report_to": "none"})
    assert again.resumed and again.identity == held and again.config == fresh.config
    assert again.env == fresh.env and again.env["WANDB_MODE"] == "offline"
    online = _decide(TrackingFlags(mode="online"), run_dir, config={}, model="m")
    assert online.env["WANDB_RUN_ID"] == held.id and online.env["WANDB_MODE"] == "online"
    silenced = _decide(TrackingFlags(disabled=True), run_dir, config={"report_to": "none"}, model="m")
    assert silenced.config == fresh.config and silenced.env["WANDB_MODE"] == "disabled"


def test_a_node_arriving_second_logs_into_the_first_ones_run_and_the_decision_stays_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    decided = _decide(TrackingFlags(project="p", mode="offline"), run_dir, config={}, model="m")
    first = RunIdentity(id="first000", name="first", project="p", group="g", mode="offline")
    claim_identity(run_dir, first)  # another node of the job claimed the directory in between
    tracking, env = start_tracking(decided, run_dir, attempt=1)
    assert tracking.resumed and tracking.identity == first and env["WANDB_RUN_ID"] == "first000"
    assert env["WANDB_NAME"] == "first" and env[MANIFEST_ENV] == str(run_dir / "manifest.attempt1.json")
    assert not decided.resumed and decided.identity.id != "first000" and decided.env["WANDB_RUN_ID"] != "first000"
    with pytest.raises(dataclasses.FrozenInstanceError):
        decided.resumed = True


def test_starting_a_launch_makes_a_new_plan_and_one_record_for_the_manifest_and_the_node(air_replica, tmp_path):
    plan = _plan(air_replica, tmp_path / "r", tracking=TrackingFlags(project="p", mode="offline"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.env = {}
    before = dict(plan.env)
    started = start(plan)
    assert dict(plan.env) == before and MANIFEST_ENV not in plan.env  # the planned launch is left as it was
    assert started.env == {**before, MANIFEST_ENV: str(plan.run_dir / "manifest.json")}
    record = json.loads((plan.run_dir / "launch-node0.json").read_text())
    manifest = json.loads((plan.run_dir / "manifest.json").read_text())
    assert record["env"] == started.env and record["command"] == started.argv
    shared = ("started_at", "host", "command", "finetune_version")
    assert [manifest["run"][k] for k in shared] == [record[k] for k in shared]
    assert manifest["repository"] == record["repository"]
    assert manifest["wandb"]["id"] == started.tracking.identity.id == read_identity(plan.run_dir).id


# -- reading offline runs ------------------------------------------------------------------------------------

_OFFLINE_RUN = """
import wandb
run = wandb.init(project="reader", name="n", group="g", tags=["t"], id="readtest", mode="offline",
                 dir=__import__("sys").argv[1], config={"big": "x" * 100000, "nested": {"a": 1}})
for step in range(3):
    run.log({"loss": 1.0 / (step + 1), "train/global_step": step})
run.summary["done"] = True
run.finish()
"""


def test_offline_run_is_read_back_across_blocks(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _OFFLINE_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (folder,) = offline_run_dirs(tmp_path)
    run = read_offline_run(folder)
    assert (run.id, run.project, run.name, run.group, run.tags) == ("readtest", "reader", "n", "g", ["t"])
    assert run.config["big"] == "x" * 100000 and run.config["nested"] == {"a": 1}  # spans 32 KiB blocks
    assert run.series("loss") == pytest.approx([1.0, 0.5, 1 / 3]) and run.summary["done"] is True
    assert run.exit_code == 0


def test_docs_name_every_launch_flag():
    from finetune.cli import build_parser

    docs = (REPO_ROOT / "docs" / "tracking.md").read_text()
    launch = build_parser()._subparsers._group_actions[0].choices["launch"]
    flags = [a.option_strings[0] for a in launch._actions if a.option_strings and "wandb" in a.option_strings[0]]
    assert flags and all(f"`{flag}" in docs for flag in flags + ["--run-name"])
