"""What tracking changes in a launch: two framework config keys and the WANDB_* environment of the trainers.

Both frameworks log through the Hugging Face trainer's WandbCallback, which starts wandb on the global rank 0
process only (one run per job) and reads everything else from the environment: WANDB_PROJECT, WANDB_ENTITY,
WANDB_RUN_GROUP, WANDB_TAGS, WANDB_NAME, WANDB_RUN_ID with WANDB_RESUME=allow (a resume continues the run),
WANDB_MODE and WANDB_DIR. So the config only gains `report_to: [wandb]` and `include_num_input_tokens_seen`
(the trainer then counts the tokens of every batch across ranks), keys that are the same on every
node and every resume; the name and id, which differ between runs, stay in the environment (the config must
be byte-identical across nodes and resumes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.tracking.identity import RunIdentity, default_run_name, new_run_id, read_identity
from finetune.tracking.redaction import secrets_in
from finetune.tracking.settings import TrackingFlags, WandbSettings, resolve_settings


@dataclass(frozen=True)
class Tracking:
    """A launch's tracking decision; claiming the wandb run at start (tracking/start.py) makes a new one."""

    settings: WandbSettings
    identity: RunIdentity | None  # the wandb run this launch logs to; None when it does not track
    resumed: bool = False  # the run directory already had a wandb run (restart, resume, a later node)
    config: Mapping[str, Any] = field(default_factory=dict)  # keys set in the framework config
    env: Mapping[str, str] = field(default_factory=dict)  # added to the trainers' environment
    warnings: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.identity is not None and self.env.get("WANDB_MODE") != "disabled"


def refuse_secrets_in_config(config: dict[str, Any]) -> None:
    places = secrets_in(config)
    if places:
        raise FinetuneError(
            f"The config holds a secret ({', '.join(places)}): it would be written to the run directory and to "
            "wandb. Pass secrets through the environment instead (HF_TOKEN, WANDB_API_KEY, ...); the frameworks "
            "read them from there."
        )


def _report_to_with_wandb(value: Any) -> list[str]:
    current = value if isinstance(value, list) else [v.strip() for v in str(value or "").split(",")]
    kept = [v for v in current if v and v not in ("none", "wandb")]
    return [*kept, "wandb"]


def _report_to_without_wandb(value: Any) -> Any:
    if value is None:
        return None
    current = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
    kept = [v for v in current if v and v not in ("none", "wandb")]
    if kept == current:
        return value
    return kept or (["none"] if isinstance(value, list) else "none")


def tracking_config(config: dict[str, Any]) -> dict[str, Any]:
    """The framework config keys a tracked run sets."""
    return {
        "report_to": _report_to_with_wandb(config.get("report_to")),
        # `true`: the only spelling both frameworks' command-line parsers take; the callback narrows it to
        # non-padding tokens when training starts (tracking/callback.py)
        "include_num_input_tokens_seen": config.get("include_num_input_tokens_seen") or True,
    }


def wandb_env(identity: RunIdentity, mode: str, run_dir: Path) -> dict[str, str]:
    env = {
        "WANDB_PROJECT": identity.project,
        "WANDB_RUN_GROUP": identity.group,
        "WANDB_NAME": identity.name,
        "WANDB_RUN_ID": identity.id,
        "WANDB_RESUME": "allow",
        "WANDB_MODE": mode,
        "WANDB_DIR": str(run_dir),  # wandb writes into WANDB_DIR/wandb/
        # wandb's own console capture would copy what the workers print, secrets included, past the launcher's
        # masking; the masked log (RUN_DIR/logs/node0.log) goes to the run's files instead (tracking/callback.py)
        "WANDB_CONSOLE": "off",
    }
    if identity.entity:
        env["WANDB_ENTITY"] = identity.entity
    if identity.tags:
        env["WANDB_TAGS"] = ",".join(identity.tags)
    return env


def _has_login() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc")).expanduser()
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "wandb" in netrc.read_text(errors="ignore"))


def decide_tracking(
    flags: TrackingFlags | None,
    *,
    model: str,
    method: str,
    dataset: str | None,
    config: dict[str, Any],
    run_dir: Path,
) -> Tracking:
    """Decide this launch's tracking: settings, the wandb run (reused when the run directory has one), and
    what changes in the config and the environment. Reads, never writes."""
    refuse_secrets_in_config(config)
    settings = resolve_settings(flags)
    stored = read_identity(run_dir)
    if stored is not None:  # the same run again: same wandb run, same config keys, whatever the flags say
        warnings = ()
        if settings.project and settings.project != stored.project:
            warnings = (
                f"{run_dir.name} logs to wandb project `{stored.project}` (its {stored.id}); "
                f"`{settings.project}` is not used for it",
            )
        mode = "disabled" if settings.explicitly_disabled else settings.mode or stored.mode
        env = wandb_env(stored, mode, run_dir)
        return Tracking(settings, stored, resumed=True, config=tracking_config(config), env=env, warnings=warnings)
    if not settings.enabled:
        if not settings.explicitly_disabled:
            return Tracking(settings, None)
        report_to = _report_to_without_wandb(config.get("report_to"))
        updates = {"report_to": report_to} if report_to is not None else {}
        return Tracking(settings, None, config=updates, env={"WANDB_MODE": "disabled"})

    assert settings.project is not None
    identity = RunIdentity(
        id=os.environ.get("WANDB_RUN_ID") or new_run_id(),
        name=config.get("run_name") or settings.name or default_run_name(model, method, dataset),
        project=settings.project,
        group=settings.group or run_dir.name,
        entity=settings.entity,
        tags=settings.tags,
        mode=settings.mode or "online",
    )
    warnings = ()
    if identity.mode == "online" and not _has_login():
        warnings = (
            "wandb is online but no login was found (WANDB_API_KEY or `wandb login`); on a cluster "
            "without network use --wandb-mode offline and `finetune sync RUN_DIR` later",
        )
    env = wandb_env(identity, identity.mode, run_dir)
    return Tracking(settings, identity, config=tracking_config(config), env=env, warnings=warnings)
