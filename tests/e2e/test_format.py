"""Format parity: every recipe trains its model on exactly the text it is served with (finetune check-format).

What is trained (docs/format.md): each assistant turn as the model generates it (the think block, empty when there
is no reasoning: GLM-4.7 writes a lone `</think>`; the answer; the tool calls) and the stop token that ends it
(`<|observation|>` after tool calls, `<|user|>` after an answer); never the prompt, the role headers or the tool
results. Every check holds a recipe to the replica of its own model, whose chat template is the official one of
that model (GLM-4.5's for GLM-4.5, -Air and 4.6; GLM-4.7's own).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.glm.format_check import CASES, FormatRequest, check_format, check_formats
from finetune.prepare.datasets import resolve_dataset
from finetune.prepare.pipeline import PrepareOptions, prepare
from finetune.recipes.recipe import all_recipes, resolve_recipe

RENDERED = [r.id for r in all_recipes() if r.meta.engine != "megatron"]  # every engine that renders on a CPU


CAUGHT = [  # (recipe, the setting dropped from its config, what the diff then shows)
    # ms-swift's hybrid-thinking default (`+ignore_empty_think`): the empty think block goes untrained
    ("swift/glm45-air_lora_4xh100", "disable_ignore_empty_think", "-\\n<think></think>\\n4\n"),
    ("swift/glm47_lora_16xh100", "disable_ignore_empty_think", "-</think>4\n+4\n"),
    # ms-swift's default generation prompt is non-thinking: rollouts would start after the closed think block
    ("swift/glm45-air_grpo_4xh100", "enable_thinking", "+<|assistant|>\\n<think></think>"),
    ("swift/glm47_grpo_16xh100", "enable_thinking", "+<|assistant|></think>"),
]
# LLaMA-Factory's built-in templates for the model, in place of the project's corrected ones
WRONG_TEMPLATE = {"llamafactory/glm45-air_lora_4xh100": "glm4_moe", "llamafactory/glm47_lora_16xh100": "glm4_7"}


# GLM-4.5's template always clears earlier reasoning: a launch refuses kept-history data for it (tests/unit/launch)
DPO_HISTORY = [
    ("swift/glm45-air_dpo_4xh100", "history_cleared"),
    ("swift/glm47_dpo_16xh100", "history_cleared"),
    ("swift/glm47_dpo_16xh100", "history_kept"),
]


def _without(recipe_id: str, key: str) -> dict:
    return {k: v for k, v in resolve_recipe(recipe_id).config.items() if k != key}


AGENT_FIXTURE = Path(__file__).parent / "fixtures" / "agent_trajectories.jsonl"
# ShareGPT with function_call / observation turns and OpenAI rows with JSON-text arguments, their tool schemas as
# published ones are written: `"required": null`, `"default": null`, a `["number", "null"]` type
PUBLIC_TOOLS_FIXTURE = Path(__file__).parent / "fixtures" / "public_tools.jsonl"
LORA = {"swift": "swift/glm45-air_lora_4xh100", "llamafactory": "llamafactory/glm45-air_lora_4xh100"}
LORA47 = {"swift": "swift/glm47_lora_16xh100", "llamafactory": "llamafactory/glm47_lora_16xh100"}
BOTH_FORMATS = [*LORA.values(), *LORA47.values()]
# reasoning in an earlier turn of a DPO prompt: GLM-4.7 drops it from the context unless clear_thinking=False
EARLIER_REASONING = {
    "messages": [
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "reasoning_content": "91 = 7 * 13.", "content": "No."},
        {"role": "user", "content": "And 97?"},
    ],
    "chosen": {"role": "assistant", "reasoning_content": "No divisor up to 9.", "content": "Yes, 97 is prime."},
    "rejected": {"role": "assistant", "content": "No."},
}
CONTEXT_TURN = {  # the first answer is context only (LLaMA-Factory's loss_weight 0)
    "messages": [
        {"role": "user", "content": [{"type": "text", "value": "Draft a title."}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "Untitled"}], "loss_weight": 0.0},
        {"role": "user", "content": [{"type": "text", "value": "A better one?"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "On Routing"}], "loss_weight": 1.0},
    ]
}


@pytest.fixture(scope="module")
def user_datasets(tmp_path_factory):
    """Agent trajectories (typed content, parallel results as one JSON list, rows ending in a tool call), a row
    with a context-only turn, published-style tool schemas, and a preference row with reasoning in its prompt
    prepared both ways (--clear-thinking true / false), as `finetune prepare` prepares a user's file."""
    root = tmp_path_factory.mktemp("user-data")
    context = root / "context_turn.jsonl"
    context.write_text(json.dumps(CONTEXT_TURN) + "\n")
    earlier = root / "earlier_reasoning.jsonl"
    earlier.write_text(json.dumps(EARLIER_REASONING) + "\n")
    out = {}
    for name, path, clear in (
        ("agent", AGENT_FIXTURE, True),
        ("context_turn", context, True),
        ("public_tools", PUBLIC_TOOLS_FIXTURE, True),
        ("history_cleared", earlier, True),
        ("history_kept", earlier, False),
    ):
        options = PrepareOptions(
            [str(path)], name, out_root=root / "data", token_stats=False, progress=False, clear_thinking=clear
        )
        out[name] = prepare(options).dataset
    return out


@pytest.fixture(scope="module", autouse=True)
def _rendered_together(user_datasets):
    """Every check below, rendered in one process per framework and model (finetune/glm/format_check.py:
    check_formats); the tests then read the cached reports."""
    recipes = [resolve_recipe(r) for r in RENDERED]
    sft = ("agent", "context_turn", "public_tools")
    check_formats(
        [
            *(FormatRequest(resolve_recipe(r), dataset=user_datasets[d]) for r in BOTH_FORMATS for d in sft),
            *(FormatRequest(resolve_recipe(r), dataset=user_datasets[d]) for r, d in DPO_HISTORY),
            *(FormatRequest(r) for r in recipes),
            *(FormatRequest(r, dataset=resolve_dataset(r.meta.dataset)) for r in recipes),
            *(FormatRequest(resolve_recipe(r), _without(r, key)) for r, key, _ in CAUGHT),
            *(FormatRequest(resolve_recipe(r), _with_template(r, t)) for r, t in WRONG_TEMPLATE.items()),
        ]
    )


def _with_template(recipe_id: str, template: str) -> dict:
    return {**resolve_recipe(recipe_id).config, "template": template}


@pytest.mark.parametrize("recipe_id", RENDERED)
def test_recipe_trains_exactly_the_official_assistant_turns(recipe_id):
    """The format cases in the shape the recipe trains on (conversations, preference pairs, RL prompts), rendered
    by its framework as its trainer renders them, against its own model's official template. Recipes with the
    same template settings and model share one rendering (the cache key holds them, the data and the code)."""
    report = check_format(resolve_recipe(recipe_id))
    assert report.rows == len(CASES) and not report.skipped
    assert report.differences == [], report.summary()


@pytest.mark.parametrize("recipe_id", BOTH_FORMATS)
def test_agent_trajectories_train_as_the_model_renders_them(recipe_id, user_datasets):
    """Typed-content rows with reasoning and parallel results, and trajectories that end in a tool call: the final
    call is trained with the `<|observation|>` that hands the turn to the tools, in both frameworks, for GLM-4.5's
    and GLM-4.7's formats."""
    report = check_format(resolve_recipe(recipe_id), dataset=user_datasets["agent"])
    assert report.rows == 3 and report.differences == [], report.summary()


@pytest.mark.parametrize("recipe_id", BOTH_FORMATS)
def test_tool_schemas_reach_training_as_the_model_renders_them_nulls_included(recipe_id, user_datasets):
    """The whole text, not only the trained tokens: the tool block is what the served model is prompted with.
    ms-swift removes nulls from tool schemas (Arrow padding to it); the prepared files hold tools as JSON text,
    whose nulls are the user's, and the repository's loader fix keeps them (trainer/swift/tool_schemas.py)."""
    report = check_format(resolve_recipe(recipe_id), dataset=user_datasets["public_tools"])
    assert report.rows == 3 and report.differences == [], report.summary()


@pytest.mark.parametrize(("lora", "untrained"), [(LORA, "Untitled"), (LORA47, "</think>Untitled")])
def test_a_context_only_turn_is_untrained_in_swift_and_shown_as_trained_by_llamafactory(lora, untrained, user_datasets):
    """ms-swift honours a turn's `loss: false`; LLaMA-Factory's sharegpt format trains every assistant turn, and the
    format check says so (trained tokens differ), so that data is not trained there unnoticed."""
    dataset = user_datasets["context_turn"]
    swift = check_format(resolve_recipe(lora["swift"]), dataset=dataset)
    assert not swift.trained_mismatch, swift.summary()
    lf = check_format(resolve_recipe(lora["llamafactory"]), dataset=dataset)
    added = [line for line in lf.differences[0].diff.splitlines() if line.startswith("+") and untrained in line]
    assert lf.trained_mismatch and added, lf.summary()


@pytest.mark.parametrize(("recipe_id", "history"), DPO_HISTORY)
def test_dpo_context_keeps_earlier_reasoning_exactly_when_the_data_says_so(recipe_id, history, user_datasets):
    """GLM-4.7's clear_thinking: a dataset prepared with --clear-thinking false keeps the earlier turn's reasoning in
    the DPO prompt, as the template renders it with clear_thinking=False; by default it is dropped. GLM-4.5's
    template has no such switch (a launch refuses such data for it); its rendering of the cleared context holds."""
    from transformers import AutoTokenizer

    from finetune.glm.format_check import official
    from finetune.replica.build import ensure_replica

    recipe = resolve_recipe(recipe_id)
    report = check_format(recipe, dataset=user_datasets[history])
    assert report.rows == 1 and report.differences == [], report.summary()
    if recipe.meta.model == "glm-4.7":  # the two renderings differ where it matters: the check could tell them apart
        tokenizer = AutoTokenizer.from_pretrained(ensure_replica("glm-4.7"))
        prompt = EARLIER_REASONING["messages"]
        kept, cleared = (official(tokenizer, prompt, None, clear_thinking=c) for c in (False, True))
        assert "<think>91 = 7 * 13.</think>No." in kept and "</think>No." in cleared and kept != cleared


@pytest.mark.parametrize("recipe_id", RENDERED)
def test_recipe_trains_its_own_sample_data_as_the_model_renders_it(recipe_id):
    recipe = resolve_recipe(recipe_id)
    dataset = resolve_dataset(recipe.meta.dataset)
    report = check_format(recipe, dataset=dataset)
    assert report.rows == dataset.manifest.counts.kept and not report.skipped
    assert report.differences == [], report.summary()


@pytest.mark.parametrize(("recipe_id", "dropped", "shows"), CAUGHT)
def test_ms_swift_defaults_that_change_the_format_are_caught(recipe_id, dropped, shows):
    """The check renders through ms-swift's own argument classes, so their defaults show: without the recipe's
    setting, the trained tokens (or the rollout prompt) differ from the official ones."""
    report = check_format(resolve_recipe(recipe_id), _without(recipe_id, dropped))
    assert report.trained_mismatch, report.summary()
    assert shows in report.summary(), report.summary()


def test_every_llamafactory_recipe_uses_the_corrected_template_of_its_model():
    from finetune.recipes.models import get_model

    for recipe in all_recipes():
        if recipe.framework == "llamafactory":
            want = get_model(recipe.meta.model).chat.llamafactory_template
            assert recipe.config["template"] == want in ("glm45", "glm47"), recipe.id


def test_megatron_recipes_are_skipped_with_a_note():
    recipe = next(r for r in all_recipes() if r.meta.engine == "megatron")
    report = check_format(recipe)
    assert report.skipped and "glm4_5" in report.skipped and not report.trained_mismatch


@pytest.mark.parametrize(("recipe_id", "template"), WRONG_TEMPLATE.items())
def test_llamafactorys_built_in_template_is_caught_with_a_readable_diff(recipe_id, template):
    report = check_format(resolve_recipe(recipe_id), _with_template(recipe_id, template))
    assert report.trained_mismatch
    summary = report.summary()
    assert "--- official trained spans" in summary and "+++ training trained spans" in summary
    assert "-<|observation|>" in summary or "</tool_call>" in summary  # the missing closing tag / stop token shows


def test_the_format_check_is_cached(monkeypatch):
    recipe = resolve_recipe("swift/glm45-air_lora_4xh100")
    check_format(recipe)
    monkeypatch.setattr("finetune.glm.format_check.render_many", lambda *a, **k: pytest.fail("rendered again"))
    assert check_format(recipe).differences == []
