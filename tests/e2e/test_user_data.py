"""A launch checks the user's own rows: what the framework will do with the over-length ones (counted to the token,
refused beyond a small share of deletions), and whether they train the tokens the model's template renders.

The counts are proven against ms-swift itself: the rows it really trains (read by the trainer at train start,
recorded in the run manifest) equal the rows the launch expected, at the exact length boundary. The DPO recipes
cut the start of an over-length pair's prompt instead of deleting the pair, and the loss mask the trainer applies
is the one `check-format` checks (recorded from inside the run by tests/helpers/trained_batches.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune.frameworks import get_framework
from finetune.glm.format_check import check_format, expected_rows
from finetune.prepare.lengths import measure
from finetune.prepare.pipeline import PrepareOptions, prepare
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import run_cli
from tests.helpers.nodes import one_node

SWIFT = get_framework("swift")
DPO = "swift/glm45-air_dpo_4xh100"
LORA = "swift/glm45-air_lora_4xh100"
LF_LORA = "llamafactory/glm45-air_lora_4xh100"
FIXTURES = Path(__file__).parent / "fixtures"
LONG_PAIRS = FIXTURES / "preference_pairs_long.jsonl"  # UltraFeedback-style pairs: 8 of 40 over 512 tokens
LIMIT = 512  # the CPU runs' max_length (cpu_smoke_overrides)
RECORD = {"FINETUNE_CALLBACKS": "tests.helpers.trained_batches:RecordTrainedSpans"}


def _prepared(path: Path, name: str, root: Path, kind: str = "auto"):
    options = PrepareOptions([str(path)], name, out_root=root, kind=kind, token_stats=False, progress=False)
    return prepare(options).dataset


def _launch(recipe_id: str, dataset, replica: Path, run_dir: Path, *extra: str, env: dict | None = None, steps=1):
    shrink = SWIFT.cpu_smoke_overrides(steps, resolve_recipe(recipe_id).meta) | {"deepspeed": None}
    args = [recipe_id, "--dataset", dataset.name, "--model", str(replica), "--run-dir", str(run_dir), *one_node()]
    args += [a for key, value in shrink.items() for a in ("--set", format_override(key, value))]
    env = {"OMP_NUM_THREADS": "1", "FINETUNE_DATA_ROOT": str(dataset.root.parent), **(env or {})}
    return run_cli("launch", *args, *extra, env=env, timeout=900)


def _rows(run_dir: Path) -> dict:
    dataset = json.loads((run_dir / "manifest.json").read_text())["dataset"]
    return {key: dataset[key] for key in ("rows", "rows_expected", "rows_trained")}


def _boundary_rows(kind: str, replica: Path, root: Path):
    """Four rows whose training sequences are LIMIT-1, LIMIT, LIMIT+1 and LIMIT+2 tokens long, by the launch's own
    count (the replica's tokenizer is byte-level, so one more prompt byte is one more token)."""
    from transformers import AutoTokenizer

    def row(n: int) -> dict:
        messages = [{"role": "user", "content": "Say x" + "y" * n}]
        if kind == "preference":
            return {"messages": messages, "chosen": {"role": "assistant", "content": "ok"}, "rejected": "no"}
        return {"messages": [*messages, {"role": "assistant", "content": "ok"}]}

    tokenizer = AutoTokenizer.from_pretrained(replica)
    probe = root / f"probe_{kind}.jsonl"
    probe.write_text(json.dumps(row(0)) + "\n")
    base = measure(_prepared(probe, f"probe_{kind}", root / "data", kind).root, kind, tokenizer).tokens["train"][0]
    source = root / f"boundary_{kind}.jsonl"
    source.write_text("".join(json.dumps(row(LIMIT - base + d)) + "\n" for d in (-1, 0, 1, 2)))
    dataset = _prepared(source, f"boundary_{kind}", root / "data", kind)
    assert list(measure(dataset.root, kind, tokenizer).tokens["train"]) == [LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2]
    return dataset


@pytest.mark.train
@pytest.mark.parametrize(("kind", "recipe_id"), [("sft", LORA), ("preference", DPO)])
def test_the_launch_counts_exactly_the_rows_ms_swift_deletes(kind, recipe_id, air_replica, tmp_path):
    """At the boundary: rows of LIMIT tokens are kept, LIMIT + 1 deleted, by the launch's count and by ms-swift's."""
    dataset = _boundary_rows(kind, air_replica, tmp_path)
    run_dir = tmp_path / "run"
    delete = ("--set", "truncation_strategy=delete", "--max-dropped-rows", "0.5")
    out = _launch(recipe_id, dataset, air_replica, run_dir, *delete)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    unit = "pairs" if kind == "preference" else "rows"
    assert f"lengths: 2 of 4 train {unit} are longer than 512 tokens" in out.stderr
    assert _rows(run_dir) == {
        "rows": {"train": 4, "val": 0},
        "rows_expected": {"train": 2, "val": 0},
        "rows_trained": {"train": 2},  # ms-swift's own training dataset, read by the trainer
    }
    assert "rows: 2 of 4 prepared training rows trained (2 deleted for their length" in out.stdout


def test_a_launch_refuses_to_delete_more_than_its_share_and_names_the_longest_rows(air_replica, tmp_path):
    dataset = _prepared(LONG_PAIRS, "long_pairs", tmp_path / "data")
    run_dir = tmp_path / "run"
    out = _launch(DPO, dataset, air_replica, run_dir, "--set", "truncation_strategy=delete")
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "ms-swift would delete 8 of 40 training pairs (20.0%) of `long_pairs`" in out.stderr
    assert "longer than 512 tokens (max_length: 512, truncation_strategy: delete" in out.stderr
    longest = [line for line in out.stderr.splitlines() if line.startswith(f"  {dataset.root}/canonical/train.jsonl:")]
    assert len(longest) == 5 and longest[0].endswith(": 2,200 tokens"), out.stderr
    assert "--max-dropped-rows 0.205" in out.stderr
    assert not run_dir.exists()  # refused before anything was written


@pytest.mark.train
def test_the_dpo_recipe_cuts_the_prompt_not_the_pair_and_trains_what_check_format_checks(air_replica, tmp_path):
    """The shipped DPO recipe (truncation_strategy: left) trains all 40 pairs; over-length pairs lose the start of
    their prompt, and their answers are trained whole unless an answer alone is over the limit. Every pair's
    trained spans, recorded from the trainer's own dataset and collator, are the official rendering's."""
    from transformers import AutoTokenizer

    dataset = _prepared(LONG_PAIRS, "long_pairs", tmp_path / "data")
    run_dir, spans = tmp_path / "run", tmp_path / "spans.jsonl"
    out = _launch(DPO, dataset, air_replica, run_dir, env={**RECORD, "TRAINED_SPANS_OUT": str(spans)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ms-swift keeps their last 512 tokens: the start of the prompt" in out.stderr
    assert "in 2 of them the answer alone is longer than the limit" in out.stderr
    assert _rows(run_dir)["rows_trained"] == {"train": 40}

    tokenizer = AutoTokenizer.from_pretrained(air_replica)
    canonical = [json.loads(line) for line in dataset.canonical_train.read_text().splitlines()]
    official = [expected_rows(tokenizer, row, "preference") for row in canonical]
    trained = [json.loads(line)["sequences"] for line in spans.read_text().splitlines()]
    assert len(trained) == 40
    whole = cut_prompt = cut_answer = 0
    for chosen, rejected in trained:
        matches = [o for o in official if o["chosen"]["text"].endswith(chosen["text"].removeprefix("[gMASK]<sop>"))]
        assert matches, chosen["text"][:200]
        want = matches[0]
        if chosen["text"] == want["chosen"]["text"]:
            whole += 1
        for got, side in ((chosen, want["chosen"]), (rejected, want["rejected"])):
            if got["trained"] == side["trained"]:
                continue
            assert len(got["trained"]) == 1 and side["trained"][0].endswith(got["trained"][0]), (got, side)
            cut_answer += side is want["chosen"]
        cut_prompt += chosen["text"] != want["chosen"]["text"]
    assert (whole, cut_prompt, cut_answer) == (32, 8, 2)
    report = check_format(resolve_recipe(DPO), dataset=dataset, tokenizer_dir=air_replica)
    assert report.rows == 40 and report.differences == [], report.summary()


def test_a_launch_refuses_user_rows_that_would_train_other_tokens(air_replica, tmp_path):
    """LLaMA-Factory's sharegpt path trains every assistant turn: a user's context-only turn (loss_weight 0) would
    be trained there. The format cases pass; the check of the user's own rows refuses the launch."""
    source = tmp_path / "context_turn.jsonl"
    turns = [("user", "Draft a title.", 0.0), ("assistant", "Untitled", 0.0), ("user", "Better?", 0.0)]
    messages = [{"role": r, "content": [{"type": "text", "value": t}], "loss_weight": w} for r, t, w in turns]
    messages.append({"role": "assistant", "content": [{"type": "text", "value": "On Routing"}], "loss_weight": 1.0})
    source.write_text(json.dumps({"messages": messages}) + "\n")
    dataset = _prepared(source, "context_turn", tmp_path / "data")
    args = [LF_LORA, "--dataset", "context_turn", "--model", str(air_replica), "--run-dir", str(tmp_path / "run")]
    out = run_cli("launch", *args, env={"FINETUNE_DATA_ROOT": str(dataset.root.parent)})
    assert out.returncode == 2, out.stderr[-3000:]
    assert "verdict: 1 of 1 rows differ in trained tokens" in out.stderr
    assert "context_turn canonical/train.jsonl:1: trained" in out.stderr and "Untitled" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_launch_compares_with_the_model_folders_own_chat_template(air_replica, tmp_path):
    """The reference is the template of the model being trained: a checkpoint whose template writes the empty think
    block differently from what the recipe's framework trains is refused, naming that template."""
    model = tmp_path / "model"
    model.mkdir()
    for item in air_replica.iterdir():
        (model / item.name).symlink_to(item)
    (model / "chat_template.jinja").unlink()
    template = (air_replica / "chat_template.jinja").read_text()
    assert template.count("<think></think>") >= 1
    (model / "chat_template.jinja").write_text(template.replace("<think></think>", "<think>\n</think>"))
    args = [LORA, "--model", str(model), "--run-dir", str(tmp_path / "run"), "--set", "deepspeed=null"]
    out = run_cli("launch", *args)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "differ in trained tokens" in out.stderr
    assert f"against {model}'s own chat template" in out.stderr
    shutil.rmtree(model)
