"""``flowkit train``'s tokens -> the config and the checkpoint to resume: ``recipe=NAME``, ``resume=RUN``,
``device=...`` and ``key=value`` overrides. Free of Lightning, so that a usage error answers at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowkit.runtime.checkpoint import file_digest, read_checkpoint, resolve_checkpoint
from flowkit.config.schema import apply_overrides, load_recipe, saved_config
from flowkit.errors import ConfigError

DEVICE_ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "auto": "auto"}


def resolve_config(tokens: list[str]) -> tuple[DictConfig, Path | None]:
    """Config and resume checkpoint from CLI tokens: ``recipe=NAME``, ``resume=RUN``, ``key=value``..."""
    recipe, resume, rest, named = "rectified", None, [], False
    for token in tokens:
        key, eq, value = token.partition("=")
        if eq and key == "recipe":
            recipe, named = value, True
        elif eq and key == "resume":
            resume = value
        elif eq and key == "device":  # shorthand shared with sample/eval/compare
            if value not in DEVICE_ACCELERATORS:
                raise ConfigError(f"device='{value}' is not one of: {', '.join(DEVICE_ACCELERATORS)}")
            rest.append(f"trainer.accelerator={DEVICE_ACCELERATORS[value]}")
        else:
            rest.append(token)
    if resume is not None:
        if named:
            raise ConfigError(f"recipe={recipe} with resume={resume}: a resumed run continues its own recipe; drop "
                              "recipe= to resume, or drop resume= to start a new run of that recipe")
        ckpt_path = resolve_checkpoint(resume)
        saved = read_checkpoint(ckpt_path)["flowkit"]
        stored = saved["config"]
        if isinstance(stored.get("optim"), dict):  # a run saved before the EMA warm-up existed continues without it
            stored["optim"].setdefault("ema_warmup", False)
        cfg = apply_overrides(saved_config(stored), rest)  # the run's own recipe; recipe= is ignored
        check_resumable(saved_config(stored), cfg)
        check_same_data(cfg, saved)
        return cfg, ckpt_path
    cfg = apply_overrides(load_recipe(recipe), rest)
    if cfg.data.path and Path(cfg.data.path).expanduser().exists():  # recorded absolute: read from any folder later
        cfg.data.path = str(Path(cfg.data.path).expanduser().absolute())
    return cfg, None


def check_same_data(cfg: DictConfig, saved: dict) -> None:
    """A ConfigError when ``data.path`` no longer holds the bytes the run was trained on (its checkpoint's digest)."""
    recorded = saved.get("data_digest")
    if not recorded or not cfg.data.path:
        return
    now = file_digest(cfg.data.path)
    if now is not None and now != recorded:
        raise ConfigError(f"data.path='{cfg.data.path}' changed since the run was trained on it (sha256 {now[:12]}..., "
                          f"the run's {recorded[:12]}...): a resumed run must read the same data; put the file back or "
                          "start a new run")


# What a resumed run may change: how long it trains, where and how it runs, logs, checks and evaluates. Everything
# else is in the saved weights and optimiser state (an optimiser restored with lr 1e-3 keeps it whatever the config
# says), so a change there would be written into the run's config without taking effect.
RESUMABLE = ("name", "run_root", "data.workers", "eval.", "trainer.max_steps", "trainer.accelerator", "trainer.devices",
             "trainer.strategy", "trainer.num_nodes", "trainer.log_every_n_steps", "trainer.checkpoint_every",
             "trainer.enable_progress_bar", "trainer.on_nonfinite", "trainer.check_finite_every", "trainer.compile",
             "trainer.gradient_clip_val", "trainer.logger")


def check_resumable(saved: DictConfig, cfg: DictConfig) -> None:
    """A ConfigError naming the first override a resumed run cannot honour."""
    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()} or {prefix[:-1]: {}}
        return {prefix[:-1]: node}

    before, after = flat(OmegaConf.to_container(saved)), flat(OmegaConf.to_container(cfg))
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key) and not key.startswith(RESUMABLE):
            raise ConfigError(f"{key} cannot change when resuming (the run has {before.get(key)!r}, asked "
                              f"{after.get(key)!r}): a resumed run continues its saved weights and optimiser state. "
                              f"Keys that may change: {', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE)}; "
                              f"to change the others, start a new run")


def check_names(cfg: DictConfig) -> None:
    """A ConfigError for the first component (model, path, coupling, time, method) whose name nothing registers,
    before anything is built or Lightning imported."""
    from flowkit.config.schema import COMPONENTS
    from flowkit.couplings import COUPLINGS
    from flowkit.methods import METHODS
    from flowkit.models import MODELS
    from flowkit.paths import PATHS
    from flowkit.timesteps import TIME_SAMPLERS

    registries = {"model": MODELS, "path": PATHS, "coupling": COUPLINGS, "time": TIME_SAMPLERS, "method": METHODS}
    for component in COMPONENTS:
        registries[component].get(cfg[component]["name"])
