"""Recipes derived in recipes/variants.yaml: each file is what the definition derives, byte for byte, and differs
from its base only where the model is named."""

from __future__ import annotations

import shutil

import pytest
import yaml

from finetune.catalog import FRAMEWORKS
from finetune.cli.recipes import catalog_rows
from finetune.errors import FinetuneError
from finetune.paths import RECIPES_DIR
from finetune.planner.headers import render_header
from finetune.recipes.generate import FRAMEWORK_KEYS, claims, derive, drift, write_derived
from finetune.recipes.models import get_model
from finetune.recipes.readme_table import README, table_ids, with_derived_rows
from finetune.recipes.recipe import load_recipe_file, recipe_paths, split_header
from finetune.recipes.variants import Variant, all_variants

VARIANTS = all_variants()
BY_ID = {v.id: v for v in VARIANTS}


def _base_text(variant: Variant) -> str:
    return (RECIPES_DIR / f"{variant.base}.yaml").read_text()


def _variant(base: str, model: str) -> Variant:
    family = next(v.family for v in VARIANTS if v.base == base)
    return Variant(base=base, model=model, family=family)


@pytest.fixture
def recipes_copy(tmp_path):
    """The recipe folders as they are, to break on purpose."""
    for framework in FRAMEWORKS:
        shutil.copytree(RECIPES_DIR / framework, tmp_path / framework)
    return tmp_path


def test_the_definition_derives_the_355b_recipes_for_glm46_and_glm47():
    for model in ("glm46", "glm47"):
        for name in ("lora_16xh100", "full_16xh100", "dpo_16xh100", "grpo_16xh100", "lora_megatron_16xh100"):
            assert f"swift/{model}_{name}" in BY_ID
        assert {f"llamafactory/{model}_lora_16xh100", f"swift/{model}_full_megatron_128xh20"} <= set(BY_ID)


@pytest.mark.parametrize("recipe_id", sorted(BY_ID))
def test_generated_file_is_its_definition_byte_for_byte(recipe_id, tmp_path):
    variant = BY_ID[recipe_id]
    body = derive(variant, _base_text(variant))
    scratch = variant.path(tmp_path)
    scratch.parent.mkdir()
    scratch.write_text(body)
    expected = render_header(load_recipe_file(scratch)) + body  # the header as `--sync` renders it
    assert variant.path().read_text() == expected, "run `python -m finetune recipes --sync`"


def test_recipes_folder_is_in_sync_with_the_definition():
    assert drift() == []
    assert set(claims().values()) == {v.base for v in VARIANTS}
    assert {f"{p.parent.name}/{p.stem}" for p in claims()} == set(BY_ID)


@pytest.mark.parametrize("recipe_id", sorted(BY_ID))
def test_only_what_names_the_model_differs_from_the_base(recipe_id):
    variant = BY_ID[recipe_id]
    model = get_model(variant.model)
    base_body = split_header(_base_text(variant))[1]
    body = split_header(variant.path().read_text())[1]
    assert body.startswith(f"\n# Generated from {variant.base} by `finetune recipes --sync`")
    assert body.split("\n", 2)[2].count("\n") == base_body.count("\n")  # line for line, comments included
    assert body.count("#") - 1 == base_body.count("#")
    base, derived = yaml.safe_load(base_body), yaml.safe_load(body)
    model_key, template = FRAMEWORK_KEYS[variant.framework]
    assert derived.pop(model_key) == model.hf_id and derived.pop("template") == getattr(model.chat, template)
    base.pop(model_key), base.pop("template")
    meta, base_meta = derived.pop("finetune"), base.pop("finetune")
    assert derived == base  # batch, LoRA, DeepSpeed, parallel layout, thinking settings: the base's
    assert meta.pop("model") == model.name and model.display_name in meta.pop("title")
    base_meta.pop("model"), base_meta.pop("title")
    assert len(meta.pop("notes")) == len(base_meta.pop("notes")) and meta == base_meta


def test_templates_follow_the_models_chat_format():
    templates = {v.id: load_recipe_file(v.path()).config["template"] for v in VARIANTS}
    assert templates["llamafactory/glm46_lora_16xh100"] == "glm45" and templates["swift/glm46_dpo_16xh100"] == "glm4_5"
    assert templates["llamafactory/glm47_lora_16xh100"] == "glm47" and templates["swift/glm47_dpo_16xh100"] == "glm4_7"
    grpo = load_recipe_file(BY_ID["swift/glm47_grpo_16xh100"].path()).config
    assert grpo["enable_thinking"] is True and grpo["disable_ignore_empty_think"] is True


def test_kept_phrases_stay_and_sibling_ids_follow_the_model():
    text = BY_ID["swift/glm47_full_megatron_128xh20"].path().read_text()
    assert "Upstream lists 128 x H20 96GB for SWIFT full SFT of GLM-4.5;" in text
    assert "see swift/glm47_full_16xh100" in text and "swift/glm45_full_16xh100" not in text
    assert (
        "glm45_format checks GLM-4.5's think and tool-call format"
        in BY_ID["swift/glm47_grpo_16xh100"].path().read_text()
    )


def test_a_name_of_the_base_model_left_behind_is_refused():
    variant = BY_ID["swift/glm47_lora_16xh100"]
    text = _base_text(variant).replace("  notes:\n", "  notes:\n    - Compare with GLM-4.5-Base.\n", 1)
    with pytest.raises(FinetuneError, match="would still name 'GLM-4.5'.*Compare with GLM-4.5-Base"):
        derive(variant, text)


def test_the_context_length_is_rewritten_where_the_base_states_it():
    variant = BY_ID["swift/glm46_lora_16xh100"]
    text = _base_text(variant).replace("max_length: 4096", "max_length: 131072  # all 131,072 tokens of GLM-4.5")
    body = derive(variant, text)
    assert "max_length: 202752  # all 202,752 tokens of GLM-4.6" in body


def test_a_model_of_other_shapes_is_refused():
    with pytest.raises(FinetuneError, match="glm-4.5-air cannot inherit glm-4.5's recipes.*hidden_size"):
        derive(
            _variant("swift/glm45_lora_16xh100", "glm-4.5-air"),
            (RECIPES_DIR / "swift/glm45_lora_16xh100.yaml").read_text(),
        )


def test_a_base_without_its_template_is_refused():
    variant = BY_ID["swift/glm47_lora_16xh100"]
    with pytest.raises(FinetuneError, match="states `template: glm4_5`"):
        derive(variant, _base_text(variant).replace("template: glm4_5\n", ""))


def test_drift_sees_a_hand_edit_a_changed_base_a_missing_file_and_a_stray_claim(recipes_copy):
    before = set(drift(recipes_copy))  # the live tree's own drift, if any, is the test above's to report
    edited = BY_ID["swift/glm47_dpo_16xh100"].path(recipes_copy)
    edited.write_text(edited.read_text().replace("beta: 0.1", "beta: 0.2"))
    base = recipes_copy / "swift/glm45_grpo_16xh100.yaml"
    base.write_text(base.read_text().replace("num_generations: 8", "num_generations: 16"))
    BY_ID["llamafactory/glm46_lora_16xh100"].path(recipes_copy).unlink()
    stray = recipes_copy / "swift/glm47_lora_4xh100.yaml"
    stray.write_text("\n# Generated from swift/glm45-air_lora_4xh100 by `finetune recipes --sync` (...)\n")
    problems = [p for p in drift(recipes_copy) if p not in before]
    assert len(problems) == 5, problems
    for name in ("swift/glm47_dpo_16xh100", "swift/glm46_grpo_16xh100", "swift/glm47_grpo_16xh100"):
        assert any(p.startswith(f"{recipes_copy / name}.yaml: differs") for p in problems), problems
    missing = BY_ID["llamafactory/glm46_lora_16xh100"].path(recipes_copy)
    assert f"{missing}: missing; run `finetune recipes --sync`" in problems
    claim = f"{stray}: claims to be generated from swift/glm45-air_lora_4xh100, which variants.yaml does not define"
    assert claim in problems

    changed = write_derived(recipes_copy)  # what `--sync` does first; headers come after
    assert len(changed) >= 5 and not stray.exists()
    assert drift(recipes_copy) == []


def test_a_kept_phrase_that_matches_no_base_is_reported(recipes_copy):
    base = recipes_copy / "swift/glm45_full_megatron_128xh20.yaml"
    base.write_text(base.read_text().replace("Upstream lists 128 x H20", "Upstream names 128 x H20"))
    assert (
        "variants.yaml: keep phrase 'Upstream lists 128 x H20 96GB for SWIFT full SFT of GLM-4.5' is in no base recipe"
        in drift(recipes_copy)
    )


def test_recipes_lists_the_generated_recipes_and_their_bases():
    rows = {row["id"]: row for row in catalog_rows()}
    assert {rid: rows[rid]["generated_from"] for rid in BY_ID} == {v.id: v.base for v in VARIANTS}
    assert rows["swift/glm45_lora_16xh100"]["generated_from"] is None
    assert rows["swift/glm47_grpo_16xh100"]["model"] == "glm-4.7"


def test_readme_rows_of_generated_recipes_follow_their_base():
    text = README.read_text()
    assert with_derived_rows(text, VARIANTS) == text, "run `python -m finetune recipes --sync`"
    row = "| `swift/glm47_grpo_16xh100` | GLM-4.7 | 2 x 8 H100 | GRPO with LoRA, vLLM colocated | 1,024 + 2,048 |"
    assert row in text.split("\n")


def test_readme_sync_restores_a_dropped_or_stale_row():
    text = README.read_text()
    lines = text.split("\n")
    dropped = "\n".join(line for line in lines if "`swift/glm46_dpo_16xh100`" not in line)
    assert dropped != text and with_derived_rows(dropped, VARIANTS) == text
    stale = text.replace("| GLM-4.7 | 2 x 8 H100 | DPO with LoRA |", "| GLM-4.7 | 2 x 8 H100 | DPO |")
    assert stale != text and with_derived_rows(stale, VARIANTS) == text
    row = next(line for line in lines if line.startswith("| `swift/glm47_dpo_16xh100`"))
    removed = text.replace(row, row + "\n" + row.replace("glm47_dpo", "glm48_dpo"))  # a file --sync removed
    assert with_derived_rows(removed, VARIANTS, drop={"swift/glm48_dpo_16xh100"}) == text


def test_every_row_of_the_recipes_table_names_a_recipe():
    ids = {f"{p.parent.name}/{p.stem}" for p in recipe_paths()}
    rows = table_ids(README.read_text())
    assert set(rows) - ids == set() and set(BY_ID) <= set(rows)
