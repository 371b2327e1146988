"""Which wandb project, entity, group, tags, name and mode a launch uses, and whether it tracks at all.

Each option is taken from the first place that sets it: the `launch` flags, then the environment
(WANDB_PROJECT, WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_TAGS, WANDB_MODE, WANDB_NAME), then the user config file
(`FINETUNE_CONFIG`, else `$XDG_CONFIG_HOME/glm45-finetune/config.yaml`, else `~/.config/glm45-finetune/config.yaml`):

    wandb:
      project: glm45
      entity: my-team
      group: null          # default: the run directory's name
      tags: [air, lora]
      mode: offline        # online | offline | disabled

Tracking is on when a project is set somewhere; `--no-wandb` (or mode `disabled`) turns it off whatever else says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from finetune.errors import FinetuneError, suggest

APP_DIR = "glm45-finetune"
MODES = ("online", "offline", "disabled")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # wandb's older spellings of the same modes


@dataclass(frozen=True)
class TrackingFlags:
    """What the `launch` command line said about tracking (None: not given)."""

    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: str | None = None  # comma-separated
    run_name: str | None = None
    mode: str | None = None
    disabled: bool = False  # --no-wandb


def _split_tags(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [t.strip() for t in items if t.strip()]


def _normal_mode(value: str | None, where: str) -> str | None:
    if value is None or value == "":
        return None
    mode = _MODE_ALIASES.get(value.strip().lower(), value.strip().lower())
    if mode not in MODES:
        raise FinetuneError(f"{where}: wandb mode `{value}` is not one of {', '.join(MODES)}.{suggest(mode, MODES)}")
    return mode


class WandbFileSettings(BaseModel):
    """The `wandb:` block of the user config file."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] | str | None = None
    mode: str | None = None

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        mode = _MODE_ALIASES.get((value or "").lower(), (value or "").lower()) or None
        if mode is not None and mode not in MODES:
            raise ValueError(f"must be one of {', '.join(MODES)}")
        return mode


class UserConfig(BaseModel):
    """The user config file: settings that hold for every launch of this user."""

    model_config = ConfigDict(extra="forbid")

    wandb: WandbFileSettings = WandbFileSettings()


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("FINETUNE_CONFIG"):
        return Path(env["FINETUNE_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / APP_DIR / "config.yaml"


def load_user_config(environ: Mapping[str, str] | None = None) -> UserConfig:
    """The user config file, or empty settings when there is none (a FINETUNE_CONFIG that names nothing is an
    error: it was set on purpose)."""
    env = os.environ if environ is None else environ
    path = user_config_path(env)
    if not path.is_file():
        if env.get("FINETUNE_CONFIG"):
            raise FinetuneError(f"FINETUNE_CONFIG={env['FINETUNE_CONFIG']}: no such file.")
        return UserConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FinetuneError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FinetuneError(f"{path}: expected a mapping with a `wandb:` block.")
    try:
        return UserConfig.model_validate(data)
    except ValidationError as exc:
        raise FinetuneError(_config_error(path, exc)) from exc


def _config_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            known = UserConfig.model_fields if len(e["loc"]) == 1 else WandbFileSettings.model_fields
            lines.append(f"  {loc}: unknown key.{suggest(str(e['loc'][-1]), known)}")
        else:
            lines.append(f"  {loc}: {e['msg']}")
    return f"{path}: invalid user config:\n" + "\n".join(lines)


class WandbSettings(BaseModel):
    """The resolved tracking options of one launch."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = []
    name: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None  # None: not set (a new run is online, a resumed
    # run keeps the mode it started with)
    explicitly_disabled: bool = False  # --no-wandb or mode `disabled`: silence wandb even where a config asks


def resolve_settings(
    flags: TrackingFlags | None,
    environ: Mapping[str, str] | None = None,
    user: UserConfig | None = None,
) -> WandbSettings:
    """Flags, then environment, then the user config file; tracking is on when a project is set."""
    flags = flags or TrackingFlags()
    env = os.environ if environ is None else environ
    file = (user if user is not None else load_user_config(env)).wandb

    def first(*values):
        return next((v for v in values if v not in (None, "", [])), None)

    mode = first(_normal_mode(flags.mode, "--wandb-mode"), _normal_mode(env.get("WANDB_MODE"), "WANDB_MODE"), file.mode)
    project = first(flags.project, env.get("WANDB_PROJECT"), file.project)
    off = flags.disabled or mode == "disabled"
    return WandbSettings(
        enabled=bool(project) and not off,
        project=project,
        entity=first(flags.entity, env.get("WANDB_ENTITY"), file.entity),
        group=first(flags.group, env.get("WANDB_RUN_GROUP"), file.group),
        tags=first(_split_tags(flags.tags), _split_tags(env.get("WANDB_TAGS")), _split_tags(file.tags)) or [],
        name=first(flags.run_name, env.get("WANDB_NAME")),
        mode=mode,
        explicitly_disabled=off,
    )
