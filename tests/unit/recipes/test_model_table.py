"""The model table is generated from the catalog: docs/models.md carries it as generated, each cell says what the
model's files say, and `finetune models` prints and syncs it."""

from __future__ import annotations

import pytest

from finetune import catalog
from finetune.errors import FinetuneError
from finetune.recipes import model_table
from finetune.recipes.model_table import BEGIN, END, markdown_table, model_rows, table_in, with_table
from finetune.recipes.models import get_model
from finetune.recipes.recipe import all_recipes


@pytest.fixture(scope="module")
def rows():
    return {row.name: row for row in model_rows()}


def test_docs_models_md_carries_the_generated_table():
    assert table_in(model_table.DOC.read_text()) == markdown_table(model_rows()), "run `finetune models --sync`"


def test_a_row_per_catalog_model_with_the_recipes_that_train_it(rows):
    assert list(rows) == list(catalog.MODELS)
    for name, row in rows.items():
        assert row.recipes == tuple(r.id for r in all_recipes() if r.meta.model == name)  # whatever exists now
    assert all(row.recipes for row in rows.values())


@pytest.mark.parametrize(
    ("name", "template", "vllm", "sglang", "context", "base"),
    [
        ("glm-4.5", "GLM-4.5", ("glm45_trained", "glm45"), ("glm45", "glm45"), 131072, "zai-org/GLM-4.5-Base"),
        ("glm-4.5-air", "GLM-4.5", ("glm45_trained", "glm45"), ("glm45", "glm45"), 131072, "zai-org/GLM-4.5-Air-Base"),
        ("glm-4.6", "GLM-4.5", ("glm45_trained", "glm45"), ("glm45", "glm45"), 202752, None),
        ("glm-4.7", "GLM-4.7", ("glm47", "glm45"), ("glm47", "glm45"), 202752, None),
    ],
)
def test_cells_follow_the_model_files(rows, name, template, vllm, sglang, context, base):
    row, spec = rows[name], get_model(name)
    assert (row.chat_template, row.vllm_parsers, row.sglang_parsers, row.context) == (template, vllm, sglang, context)
    assert row.hub_ids == {"instruct": spec.hf_id, "base": base, "fp8": spec.checkpoints["fp8"]}
    assert row.architecture == "`glm4_moe` / `Glm4MoeForCausalLM`"
    assert row.checkpoint_params == spec.checkpoint_params
    cells = dict(zip(model_table.COLUMNS, row.cells(), strict=True))
    assert cells["context"] == f"{context:,}" and ("base none" in cells["hub ids"]) == (base is None)


def test_parameters_are_the_planners_counts(rows):
    """355B-A32B and 106B-A12B as transformers builds them (no MTP layer); GLM-4.6 and 4.7 have GLM-4.5's."""
    assert (rows["glm-4.5"].total_params, rows["glm-4.5"].active_params) == (352_797_814_784, 32_856_305_664)
    assert (rows["glm-4.5-air"].total_params, rows["glm-4.5-air"].active_params) == (106_852_245_504, 12_803_366_912)
    for name in ("glm-4.6", "glm-4.7"):
        assert (rows[name].total_params, rows[name].active_params) == (352_797_814_784, 32_856_305_664)
    assert "352.8 B, 32.9 B active (checkpoint: 358.3 B" in rows["glm-4.7"].cells()[3]


def test_sync_rewrites_the_block_and_nothing_else(tmp_path, monkeypatch, capsys):
    from finetune.cli import main

    doc = tmp_path / "models.md"
    doc.write_text(f"# Models\n\nintro\n{BEGIN}\n| stale | table |\n{END}\n\n## after\ntext\n")
    monkeypatch.setattr(model_table, "DOC", doc)
    assert main(["models", "--sync"]) == 0 and "updated" in capsys.readouterr().out
    text = doc.read_text()
    assert text == f"# Models\n\nintro\n{BEGIN}\n{markdown_table(model_rows())}{END}\n\n## after\ntext\n"
    assert main(["models", "--sync"]) == 0 and "unchanged" in capsys.readouterr().out
    assert main(["models", "--markdown"]) == 0 and capsys.readouterr().out == markdown_table(model_rows())
    assert main(["models"]) == 0 and "glm-4.7\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text",
    ["no markers at all\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n|a|\n{END}\n{BEGIN}\n{END}\n", f"{BEGIN} |a| {END}\n"],
)
def test_a_document_without_one_marked_block_is_refused(text):
    with pytest.raises(FinetuneError, match="expected one"):
        with_table(text, "| table |\n")
