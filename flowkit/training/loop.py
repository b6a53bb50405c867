"""``flowkit train``: recipe -> run directory with checkpoints, logs, a sample figure and a summary.

Everything the recipe names is built and checked before the run directory is created, so a bad
recipe or override writes nothing. ``resume`` continues a run in its own directory from its
``last.ckpt`` with the run's saved config (overrides such as ``trainer.max_steps`` still apply).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from flowkit.config.build import Parts, build_parts
from flowkit.runtime.checkpoint import read_checkpoint, write_atomically
from flowkit.conditioning import conditioning, labels_for
from flowkit.config.schema import to_dict, validate
from flowkit.couplings import COUPLINGS
from flowkit.data.datamodule import PairDataModule
from flowkit.errors import ConfigError, Interrupted, TrainingError
from flowkit.training.evaluate import label_accuracy, resolve_eval, sampler_table
from flowkit.config.guidance import classifier_accuracy
from flowkit.runtime.memory import (MODEL_SIZE, ReportOutOfMemory, check_draw_fits, check_training_fits,
                                    training_device)
from flowkit.methods import METHODS
from flowkit.metrics.plots import save_samples
from flowkit.config.resolve import resolve_config  # noqa: F401  (re-exported: train's inputs)
from flowkit.runtime.interrupt import set_hint
from flowkit.runtime.rundir import RUN_DIR_ENV, RunLock, is_rank_zero, new_run_dir, shared_run_dir
from flowkit.training.ema import EMA
from flowkit.training.loggers import check_logger
from flowkit.training.module import STOP_SIGNALS, FlowModule
from flowkit.training.trainer import check_trainer_settings, make_trainer


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    seconds: float
    skipped: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user should know about this run (e.g. a short EMA)
    rounds: list[RunResult] = field(default_factory=list)  # every round of a multi-round run, in order


def train(cfg: DictConfig, resume: Path | None = None) -> RunResult:
    """Train ``cfg``, then each further round ``next_round`` asks for, in its own run directory.
    Returns the last round, with every round's result in ``rounds``."""
    results = [train_once(cfg, resume)]
    while (following := next_round(to_dict(cfg), results[-1].run_dir)) is not None:
        cfg = OmegaConf.merge(cfg, following)
        results.append(train_once(cfg))
    results[-1].rounds = results
    return results[-1]


def next_round(config: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """The config update for one more round, from the coupling's or the method's ``next_round`` hook (e.g. a
    coupling whose teacher is the run just trained, a method that halves its steps), or None when done."""
    for registry, key in ((COUPLINGS, "coupling"), (METHODS, "method")):
        following = registry.get(config[key]["name"]).next_round(config, run_dir)
        if following is not None:
            return following
    return None


def check_machine(trainer: dict[str, Any]) -> None:
    """What the config asks of this machine, checked before anything is built or written."""
    if trainer["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={trainer['accelerator']} (device=cuda) but this machine has no CUDA GPU "
                          f"that torch {torch.__version__} can use; valid here: cpu, auto")
    cluster = ("MASTER_ADDR", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID")
    if trainer["num_nodes"] > 1 and not any(v in os.environ for v in cluster):
        raise ConfigError(f"trainer.num_nodes={trainer['num_nodes']} needs a multi-node launcher (torchrun or SLURM, "
                          f"which set {' or '.join(cluster)}); without one the run would wait for the other nodes forever")


def train_once(cfg: DictConfig, resume: Path | None = None) -> RunResult:
    validate(cfg)
    config = to_dict(cfg)
    check_machine(config["trainer"])
    check_logger(config["trainer"]["logger"])
    L.seed_everything(config["seed"], verbose=False)  # before building: the model's init is seeded
    parts = build_parts(config)  # every name and option is checked here, before anything is written
    if parts.target.encoded_by and not config["data"]["encoder"]:  # codes (shards of an encoder): decoded by it
        config["data"]["encoder"] = parts.target.encoded_by
    config["eval"], eval_note = resolve_eval(config["eval"], parts, config["trainer"]["max_steps"]
                                             * config["data"]["batch_size"] * 3)
    for spec in [] if parts.method.classifier else [config["eval"]["solver"], *config["eval"]["compare"]]:
        parts.check_stochastic(spec)  # refused now, not after training
    check_training_fits(parts.model, config["data"]["batch_size"], tuple(parts.target.shape),
                        config["trainer"]["accelerator"], config["trainer"]["precision"])
    e = config["eval"]  # the final evaluation's draws, checked now rather than after training
    check_draw_fits(parts.model, e["n"] * e["repeats"], tuple(parts.target.shape),
                    training_device(config["trainer"]["accelerator"]),
                    f"eval.n={e['n']} with eval.repeats={e['repeats']}")
    check_trainer_settings(config)
    workers = config["data"]["workers"]
    in_loader = workers > 0 and parts.coupling.data_only  # pairs solved by the loader processes
    module = FlowModule(parts.model, parts.method, None if in_loader else parts.coupling, config,
                        parts.target.shape, parts.classes, parts.target.num_classes)
    datamodule = PairDataModule(parts.source, parts.target, config["data"]["batch_size"], config["seed"],
                                labelled=parts.classes > 0, workers=workers,
                                coupling=parts.coupling if in_loader else None)
    resumed_at = None
    if resume:
        checkpoint = read_checkpoint(resume)
        fault = module.resume_fault(checkpoint)
        if fault:
            raise ConfigError(f"checkpoint '{resume}' cannot resume this run: {fault}")
        resumed_at = checkpoint["global_step"]
    run_dir = resume.parent if resume else shared_run_dir(lambda: new_run_dir(config["run_root"], config["name"]),
                                                          training_device(config["trainer"]["accelerator"]))
    set_hint(f"the run directory {run_dir} is kept; resume it with: flowkit train resume={run_dir}"
             if resume else f"the run directory {run_dir} holds no checkpoint yet; delete it and start again")
    with RunLock(run_dir) if is_rank_zero() else contextlib.nullcontext():
        if is_rank_zero():
            write_atomically(run_dir / "config.yaml", lambda p: p.write_text(OmegaConf.to_yaml(config)))
        trainer = make_trainer(config, run_dir, manual=not module.automatic_optimization, resumed_at=resumed_at)
        seconds = fit(trainer, module, datamodule, resume, run_dir, workers)
    set_hint(f"the trained run is kept in {run_dir} (last.ckpt, step {trainer.global_step}); its summary was not "
             f"written: evaluate it with: flowkit eval ckpt={run_dir}")
    notes = [note for note in [ema_of(trainer).short_run_note(config["trainer"]["max_steps"]), eval_note] if note]
    result = RunResult(run_dir, trainer.global_step, seconds, skipped=module.skipped, notes=notes)
    if trainer.is_global_zero:
        result.summary = summarize(module, parts, config, run_dir, seconds, notes)
    return result


def fit(trainer: L.Trainer, module: FlowModule, datamodule: PairDataModule, resume: Path | None, run_dir: Path,
        workers: int) -> float:
    """``trainer.fit`` with its failures as one line, SIGINT / SIGTERM as a saved stop (``Interrupted``), and the
    EMA weights in the model afterwards. Returns the seconds it took."""
    start = time.perf_counter()
    with warnings.catch_warnings(), stop_on_signals(module):
        # By default the data is drawn in-process (cheap toys); data.workers > 0 is for minibatch OT.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")  # lightning vs torch 2.13
        warnings.filterwarnings("ignore", message=".*dirpath has changed from.*")  # a moved run resumes in place
        os.environ[RUN_DIR_ENV] = str(run_dir)  # for DDP ranks spawned inside fit
        threads = torch.get_num_threads()
        # the loader processes get cores of their own: OpenMP threads spinning on shared cores slow both sides
        # (2-core CPU, OT-CFM at batch 256 with one worker: 76 steps/s with 2 training threads, 165 with 1)
        torch.set_num_threads(max(1, threads - workers))
        try:
            with ReportOutOfMemory(f"data.batch_size or {MODEL_SIZE}"):
                trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        except TrainingError as exc:
            raise TrainingError(f"{exc}; training stopped. Last good checkpoint: {last_good(run_dir)}") from None
        finally:
            os.environ.pop(RUN_DIR_ENV, None)
            torch.set_num_threads(threads)
    if module.stop_signal is not None:
        signum = module.stop_signal
        raise Interrupted(f"interrupted by {signal.Signals(signum).name} at step {trainer.global_step} (saved: "
                          f"{run_dir / 'last.ckpt'}); resume with: flowkit train resume={run_dir}", 128 + signum)
    ema_of(trainer).to_model(module)
    return time.perf_counter() - start


def ema_of(trainer: L.Trainer) -> EMA:
    return next(c for c in trainer.callbacks if isinstance(c, EMA))


@contextlib.contextmanager
def stop_on_signals(module: FlowModule) -> Iterator[None]:
    """While training, SIGINT and SIGTERM ask the module to stop after the current step (it then saves); a second
    SIGINT interrupts at once. Outside the main thread (no signal handlers there), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if module.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        module.stop_signal = signum

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    module.signal_handler = stop  # installed again once fit has started: Lightning's SIGTERM handler would raise
    try:
        yield
    finally:
        module.signal_handler = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def last_good(run_dir: Path) -> str:
    """The checkpoint a stopped run keeps, with the step the file itself holds (a save that failed on a full disk
    had already been counted as saved)."""
    kept = run_dir / "last.ckpt"
    if not kept.exists():
        return "none was written yet"
    try:
        step = torch.load(kept, map_location="cpu", weights_only=True, mmap=True).get("global_step")
    except Exception:  # unreadable: name the file alone
        return str(kept)
    return f"{kept} (step {step})" if isinstance(step, int) else str(kept)


def summarize(module: FlowModule, parts: Parts, config: dict[str, Any], run_dir: Path, seconds: float,
              notes: list[str] | None = None) -> dict[str, Any]:
    """The target's metric for each eval sampler against its floor, and a figure, with the EMA weights (Lightning
    copied them into the module at the end of fit)."""
    # on the training device: Lightning hands the module back on the CPU after fit
    device = torch.device(training_device(config["trainer"]["accelerator"]))
    module.model.to(device).eval()
    ecfg = config["eval"]
    world = module.trainer.world_size if module._trainer is not None else 1  # DDP: processes that trained it
    summary: dict[str, Any] = {"run_dir": str(run_dir), "steps": module.global_step, "train_seconds": seconds,
                               "world_size": world, "skipped_batches": module.skipped, "notes": notes or []}
    if parts.method.classifier:  # not sampled: its accuracy along the path instead
        generator = torch.Generator().manual_seed(ecfg["seed"])
        summary["classifier_accuracy"] = classifier_accuracy(parts.method.predictor(module.model)[0], parts.path,
                                                             parts.source, parts.target, ecfg["n"], generator, device)
        write_atomically(run_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
        return summary
    # a class-conditional model samples uniformly random classes, unguided (w = 1)
    labels = labels_for(ecfg["n"] * ecfg["repeats"], parts.classes, -1,
                        torch.Generator().manual_seed(ecfg["seed"] + 2)) if parts.classes else None
    # the pace of one network evaluation of one sample in training (a step: forward and backward, about 3 of them)
    pace = seconds / max(module.global_step, 1) / max(config["data"]["batch_size"], 1) / 3 if seconds else None
    table, samples, reference = sampler_table(parts, ecfg, device, conditioning(parts.classes, labels, None),
                                              report=True, pace=pace)
    summary.update(table)
    if labels is not None and samples is not None:
        summary["label_accuracy"] = label_accuracy(parts.target, samples, labels)
    if samples is not None:  # as data: latent codes decoded
        save_samples(run_dir / "samples.png", parts.target.decode(samples), reference,
                     f"{config['name']} ({ecfg['solver']})")
        summary["samples_png"] = str(run_dir / "samples.png")
    write_atomically(run_dir / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    return summary
