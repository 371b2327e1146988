"""Derived recipes: each written from its base recipe's text, line by line, so the base's comments survive.

A derived file is the base's body (everything below the header) with what names the model rewritten: the
model's name, display name, hub ids and context length, the ids of recipes derived with it, and the value of
`template:`; phrases the definition keeps stay as written. Anything else that still names the base model
afterwards is an error, not a silent copy. The file opens with the usual generated header (`finetune recipes
--sync` renders it after writing the bodies) and one line saying where it comes from; that line is how a file
claims to be generated, and `drift()` reports a claim without a definition as well as a file that differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from finetune.errors import FinetuneError
from finetune.paths import RECIPES_DIR
from finetune.recipes.models import ModelSpec, get_model
from finetune.recipes.recipe import split_header
from finetune.recipes.variants import VARIANTS_FILE, Variant, all_variants, check_same_shapes, recipe_prefix

SYNC_COMMAND = "finetune recipes --sync"
MARKER = "# Generated from {base} by `" + SYNC_COMMAND + "` (recipes/variants.yaml); do not edit by hand."
CLAIM = re.compile(r"^# Generated from (\S+) by `" + re.escape(SYNC_COMMAND) + "`", re.MULTILINE)
# the framework config's model key and the ChatFormat attribute naming its template
FRAMEWORK_KEYS = {"swift": ("model", "swift_template"), "llamafactory": ("model_name_or_path", "llamafactory_template")}
TEMPLATE_LINE = re.compile(r"^template:\s*(?P<value>[^\s#]+)", re.MULTILINE)


def _replacements(variant: Variant, base: ModelSpec, model: ModelSpec) -> dict[str, str]:
    """Each word that names the base model, and what the derived recipe says instead."""
    words = {base.name: model.name, base.display_name: model.display_name, base.hf_id: model.hf_id}
    words |= {hub_id: model.checkpoints[kind] for kind, hub_id in base.checkpoints.items() if kind in model.checkpoints}
    words |= {f"{base.context:,}": f"{model.context:,}", str(base.context): str(model.context)}
    base_prefix, prefix = recipe_prefix(base.name) + "_", recipe_prefix(model.name) + "_"
    for sibling in variant.family.bases:  # recipes derived together point at each other
        stem = sibling.split("/", 1)[1]
        words[stem] = prefix + stem.removeprefix(base_prefix)
    return words


def _substitute(text: str, words: dict[str, str]) -> str:
    """One pass, longest word first, whole words only (`GLM-4.5` is not the start of `GLM-4.5-Air`)."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w-]|\.\d)")
    return pattern.sub(lambda m: words[m.group(0)], text)


def _set_template(text: str, variant: Variant, base: ModelSpec, model: ModelSpec) -> str:
    attribute = FRAMEWORK_KEYS[variant.framework][1]
    expected, wanted = getattr(base.chat, attribute), getattr(model.chat, attribute)
    match = TEMPLATE_LINE.search(text)
    if match is None or match["value"] != expected:
        found = match["value"] if match else "none"
        raise FinetuneError(f"{variant.base}: a base recipe states `template: {expected}` ({found} found).")
    return text[: match.start("value")] + wanted + text[match.end("value") :]


def _check_no_base_names(text: str, variant: Variant, base: ModelSpec, model: ModelSpec) -> None:
    named = [base.display_name, base.name, base.hf_id, *base.checkpoints.values()]
    if base.context != model.context:
        named += [f"{base.context:,}", str(base.context)]
    for word in named:
        for line in text.splitlines():
            if word in line:
                raise FinetuneError(
                    f"{variant.base}: the copy for {model.name} would still name {word!r}: {line.strip()!r}. "
                    f"Reword the base, or add the phrase to `keep:` in {VARIANTS_FILE.name} if it is a fact "
                    f"about {base.display_name} itself."
                )


def _check_settings(text: str, variant: Variant, model: ModelSpec) -> None:
    data = yaml.safe_load(text)
    model_key, attribute = FRAMEWORK_KEYS[variant.framework]
    got = (data["finetune"]["model"], data.get(model_key), data.get("template"))
    want = (model.name, model.hf_id, getattr(model.chat, attribute))
    if got != want:
        raise FinetuneError(f"{variant.base}: the copy for {model.name} says {got}, expected {want}.")


def derive(variant: Variant, base_text: str) -> str:
    """The body of the derived recipe (the marker line, then the base's body rewritten); its header comes
    from `finetune.planner.headers`, as every recipe's does."""
    if CLAIM.search(base_text):
        raise FinetuneError(f"{variant.base} is itself generated: derive from the recipe it comes from.")
    base, model = get_model(yaml.safe_load(base_text)["finetune"]["model"]), get_model(variant.model)
    if not variant.base.split("/", 1)[1].startswith(recipe_prefix(base.name) + "_"):
        raise FinetuneError(f"{variant.base}: a base recipe of {base.name} is named {recipe_prefix(base.name)}_...")
    check_same_shapes(base, model)
    _, body = split_header(base_text)
    kept = [phrase for phrase in variant.family.keep if phrase in body]
    for i, phrase in enumerate(kept):  # masked, so nothing inside them is rewritten or flagged
        body = body.replace(phrase, f"\0{i}\0")
    body = _set_template(_substitute(body, _replacements(variant, base, model)), variant, base, model)
    _check_no_base_names(body, variant, base, model)
    for i, phrase in enumerate(kept):
        body = body.replace(f"\0{i}\0", phrase)
    _check_settings(body, variant, model)
    return "\n" + MARKER.format(base=variant.base) + "\n" + body


def derived_bodies(variants: list[Variant], recipes_dir: Path = RECIPES_DIR) -> dict[Path, str]:
    """Every derived recipe's path and body, from the base files as they are now."""
    paths = {v.base: recipes_dir / f"{v.base}.yaml" for v in variants}
    for base, path in paths.items():
        if not path.is_file():
            raise FinetuneError(f"{VARIANTS_FILE.name} names the base recipe {base}, and {path} does not exist.")
    bases = {base: path.read_text() for base, path in paths.items()}
    return {v.path(recipes_dir): derive(v, bases[v.base]) for v in variants}


def claims(recipes_dir: Path = RECIPES_DIR) -> dict[Path, str]:
    """Recipe files that say they are generated, and the base each names."""
    found = {}
    for path in sorted(recipes_dir.glob("*/*.yaml")):
        match = CLAIM.search(path.read_text())
        if match:
            found[path] = match[1]
    return found


def unused_keep_phrases(variants: list[Variant], recipes_dir: Path = RECIPES_DIR) -> list[str]:
    """Kept phrases no base of their family contains any more (a reworded base leaves them behind)."""
    unused = []
    for family in {id(v.family): v.family for v in variants}.values():
        texts = [(recipes_dir / f"{base}.yaml").read_text() for base in family.bases]
        unused += [phrase for phrase in family.keep if not any(phrase in text for text in texts)]
    return unused


def drift(recipes_dir: Path = RECIPES_DIR, definition: Path = VARIANTS_FILE) -> list[str]:
    """What differs between recipes/ and the definition (empty when in sync): missing or edited derived files,
    files that claim to be generated without a definition, kept phrases that match nothing."""
    variants = all_variants(definition)
    problems = [
        f"{definition.name}: keep phrase {p!r} is in no base recipe" for p in unused_keep_phrases(variants, recipes_dir)
    ]
    for path, body in derived_bodies(variants, recipes_dir).items():
        if not path.is_file():
            problems.append(f"{path}: missing; run `{SYNC_COMMAND}`")
        elif split_header(path.read_text())[1] != body:
            problems.append(f"{path}: differs from what {definition.name} derives; run `{SYNC_COMMAND}`")
    expected = {v.path(recipes_dir): v.base for v in variants}
    for path, base in claims(recipes_dir).items():
        if expected.get(path) != base:
            problems.append(f"{path}: claims to be generated from {base}, which {definition.name} does not define")
    return problems


def write_derived(recipes_dir: Path = RECIPES_DIR, definition: Path = VARIANTS_FILE) -> list[str]:
    """Write every derived recipe's body under its current header (new files get theirs from the header sync
    that follows) and remove generated files the definition no longer asks for; returns what changed."""
    variants = all_variants(definition)
    bodies = derived_bodies(variants, recipes_dir)
    changed = []
    for path, body in bodies.items():
        old = path.read_text() if path.is_file() else ""
        text = split_header(old)[0] + body
        if text != old:
            path.write_text(text)
            changed.append(f"wrote {path}")
    for path in claims(recipes_dir):
        if path not in bodies:
            path.unlink()
            changed.append(f"removed {path} (no longer in {definition.name})")
    return changed
