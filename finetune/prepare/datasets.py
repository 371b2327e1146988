"""Prepared datasets: what `finetune prepare` wrote, found by name.

A prepared dataset is one self-contained folder, `<root>/NAME/`:
  manifest.json          row counts, content hash, sources, options, statistics
  canonical/train.jsonl  OpenAI-style messages, the source of truth (+ val.jsonl)
  llamafactory/…         LLaMA-Factory's sharegpt files, registered in dataset_info.json as NAME (and NAME_val)
  swift/…                ms-swift's messages files
  rejects.jsonl          the rows --skip-invalid left out, each with its reason (only when there were any)
The root is `data/prepared/` in the repository; `FINETUNE_DATA_ROOT` or `--out-root` move it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import FinetuneError, suggest
from finetune.paths import DATA_DIR
from finetune.prepare.manifest import FORMAT_VERSION, MANIFEST, Kind, Manifest, load_manifest

LF_REGISTRY = "dataset_info.json"


def data_root(override: Path | str | None = None) -> Path:
    """Where prepared datasets live: --out-root, else FINETUNE_DATA_ROOT, else data/prepared/."""
    if override is not None:
        return Path(override).expanduser().resolve()
    env = os.environ.get("FINETUNE_DATA_ROOT")
    return Path(env).expanduser().resolve() if env else DATA_DIR / "prepared"


@dataclass
class PreparedDataset:
    """One prepared dataset folder and the paths each framework reads."""

    name: str
    root: Path  # the dataset's own folder
    kind: Kind
    manifest: Manifest  # what `prepare` wrote in manifest.json: counts, content hash, sources, statistics

    @property
    def has_val(self) -> bool:
        return (self.root / "canonical" / "val.jsonl").is_file()

    @property
    def has_llamafactory(self) -> bool:
        return (self.root / LF_REGISTRY).is_file()

    def _require_llamafactory(self) -> None:
        if not self.has_llamafactory:
            raise FinetuneError(
                f"Dataset `{self.name}` holds RL prompts, which LLaMA-Factory does not train on (it has no "
                "reward-function RL); use it with a SWIFT GRPO recipe."
            )

    @property
    def llamafactory_dir(self) -> Path:
        """The folder holding this dataset's dataset_info.json (LLaMA-Factory's `dataset_dir`)."""
        self._require_llamafactory()
        return self.root

    @property
    def llamafactory_train(self) -> str:
        """The name LLaMA-Factory's `dataset` key takes."""
        self._require_llamafactory()
        return self.name

    @property
    def llamafactory_val(self) -> str | None:
        """The name for LLaMA-Factory's `eval_dataset`, when the dataset has a validation split."""
        self._require_llamafactory()
        return f"{self.name}_val" if self.has_val else None

    @property
    def swift_train(self) -> Path:
        return self.root / "swift" / "train.jsonl"

    @property
    def swift_val(self) -> Path | None:
        path = self.root / "swift" / "val.jsonl"
        return path if path.is_file() else None

    @property
    def canonical_train(self) -> Path:
        return self.root / "canonical" / "train.jsonl"

    @property
    def canonical_val(self) -> Path | None:
        path = self.root / "canonical" / "val.jsonl"
        return path if path.is_file() else None


def load_prepared(folder: Path) -> PreparedDataset:
    """The prepared dataset in `folder` (which must hold a manifest and its files)."""
    folder = Path(folder).resolve()
    try:
        manifest = load_manifest(folder)
    except (OSError, ValueError) as exc:
        older = _older_format(folder)
        if older is not None:
            raise FinetuneError(
                f"{folder}: prepared by an older `finetune prepare` (format {older}; this one reads "
                f"{FORMAT_VERSION}): prepare it again with the same command and `--force`."
            ) from exc
        raise FinetuneError(f"{folder}: not a prepared dataset ({exc}); run `python -m finetune prepare`.") from exc
    dataset = PreparedDataset(manifest.name, folder, manifest.kind, manifest)
    missing = [rel for rel in manifest.outputs if not (folder / rel).is_file()]
    if missing or not dataset.canonical_train.is_file():
        raise FinetuneError(
            f"Prepared dataset `{dataset.name}` at {folder} is incomplete (missing {', '.join(missing) or 'files'}); "
            "prepare it again with `--force`."
        )
    return dataset


def _older_format(folder: Path) -> int | None:
    """The format version of a manifest an older `prepare` wrote, if that is what `folder` holds."""
    try:
        version = json.loads((folder / MANIFEST).read_text()).get("format_version")
    except (OSError, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and version < FORMAT_VERSION else None


def list_datasets(root: Path | str | None = None) -> list[str]:
    """Names of the prepared datasets under the root, sorted."""
    base = data_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith("."))


def resolve_dataset(name: str, root: Path | str | None = None) -> PreparedDataset:
    """A prepared dataset by name (or by the path of its folder)."""
    base = data_root(root)
    if (base / name / MANIFEST).is_file():
        return load_prepared(base / name)
    candidate = Path(name).expanduser()
    if (candidate / MANIFEST).is_file():
        return load_prepared(candidate)
    known = list_datasets(root)
    listing = f" Prepared datasets: {', '.join(known)}." if known else " There are none yet."
    raise FinetuneError(
        f"No prepared dataset `{name}` in {base}.{suggest(name, known)}{listing} "
        f"Prepare one with `python -m finetune prepare FILE... --name {name}`."
    )
