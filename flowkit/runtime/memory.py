"""Sizes a machine cannot hold, said in one line: a check of what a setting will need before it is allocated
(a batch, a network, a draw of samples) and out-of-memory errors met on the way turned into ``TrainingError``."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Callable

import torch

from flowkit.errors import ConfigError, TrainingError


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the host's MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**63  # unknown: never refuse on a guess


def size(nbytes: float) -> str:
    units = ("bytes", "KB", "MB", "GB", "TB", "PB")
    k = min(len(units) - 1, int(math.log(max(nbytes, 1), 1024)))
    return f"{nbytes / 1024**k:.1f} {units[k]}" if k else f"{int(nbytes)} bytes"


def check_fits(setting: str, nbytes: float, device: torch.device | str = "cpu", what: str = "") -> None:
    """A ConfigError naming ``setting`` when ``nbytes`` (an estimate of what it needs) exceed what ``device``
    has free."""
    free = available_bytes(device)
    if nbytes > free:
        raise ConfigError(f"{setting} needs about {size(nbytes)}{f' ({what})' if what else ''}, more than the "
                          f"{size(free)} free on {torch.device(device).type}; make it smaller")


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc)))


class ReportOutOfMemory(contextlib.ContextDecorator):
    """Around a block or as a decorator: an allocation that fails inside is one line naming the ``settings``
    that size it."""

    def __init__(self, settings: str) -> None:
        self.settings = settings

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        first = " ".join(str(exc).split())[:200]
        raise TrainingError(f"out of memory ({first}); lower {self.settings}") from None


def meta_parameters(build: Callable[[], torch.nn.Module]) -> int | None:
    """How many parameters ``build()`` makes, counted on the meta device (nothing allocated); None where the
    network cannot be built there. A ConfigError from ``build`` (a bad option) is raised as it is."""
    try:
        with torch.device("meta"):
            net = build()
    except ConfigError:
        raise
    except Exception:
        return None
    return sum(p.numel() for p in net.parameters())


def training_device(accelerator: str) -> str:
    return "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"


MODEL_SIZE = "the model (model.width, model.depth, ...)"  # the settings that size a network, as errors name them
TRAIN_COPIES = 5  # a parameter in training: itself, its gradient, two Adam moments, its EMA
BATCH_COPIES = 8  # a batch in a step: source, target, interpolant, target velocity, prediction, their gradients


def outputs_per_sample(module: torch.nn.Module, call: Callable[[], object], n: int) -> int:
    """Numbers the leaf modules of ``module`` output while ``call()`` runs on ``n`` samples (counted by hooks, without
    gradients, in eval mode: no running statistics updated, no random draws taken from the run's stream), per
    sample; 0 where the call fails."""
    counts: list[int] = []
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(lambda m, i, o: counts.append(o.numel() if torch.is_tensor(o) else 0))
             for m in leaves]
    training = module.training
    try:
        with torch.no_grad():
            module.eval()
            call()
    except Exception:
        return 0
    finally:
        module.train(training)
        for hook in hooks:
            hook.remove()
    return sum(counts) // n


def activations_per_sample(net: torch.nn.Module, data_shape: tuple[int, ...]) -> int:
    """Numbers the layers of ``net`` output for one sample (one forward at batch 2 on its device)."""
    try:
        device = next(net.parameters()).device
    except StopIteration:
        return 0
    return outputs_per_sample(net, lambda: net(torch.zeros(2, *data_shape, device=device),
                                               torch.full((2,), 0.5, device=device)), 2)


def batch_that_fits(numbers_per_sample: int, device: torch.device | str, cap: int) -> int:
    """The largest batch up to ``cap`` whose ``numbers_per_sample`` float32 numbers each take at most half of what
    ``device`` has free (at least 1)."""
    if numbers_per_sample <= 0:
        return cap
    return max(1, min(cap, available_bytes(device) // (2 * 4 * numbers_per_sample)))


def check_training_fits(net: torch.nn.Module, batch: int, data_shape: tuple[int, ...], accelerator: str,
                        precision: str = "32-true") -> None:
    """What a run needs on its device, estimated before anything is written: the networks in training, and a
    batch with the activations a step keeps for its backward pass (2 bytes each under a 16-bit precision)."""
    device = training_device(accelerator)
    parameters = sum(p.numel() for p in net.parameters())
    check_fits(MODEL_SIZE, TRAIN_COPIES * 4 * parameters, device,
               f"{parameters:,} parameters with their gradients, Adam moments and EMA")
    activation_bytes = 2 if precision.startswith(("bf16", "16")) else 4
    numbers = 2 * activations_per_sample(net, data_shape)
    per_sample = BATCH_COPIES * math.prod(data_shape) + numbers
    check_fits(f"data.batch_size={batch}", batch * (4 * BATCH_COPIES * math.prod(data_shape) + activation_bytes * numbers),
               device, f"{per_sample:,} numbers a sample in a training step: data copies, activations and their "
                       f"gradients")


DRAW_COPIES = 10  # copies of a draw a solver holds at once (dopri5: state, 7 stages, error estimate)


def check_draw_fits(net: torch.nn.Module, n: int, data_shape: tuple[int, ...], device: torch.device | str,
                    setting: str | None = None) -> None:
    """A draw of ``n`` samples in one batch: the solver's copies and the network's activations (without gradients
    about half of them are alive at once). ``setting``: how the error names it (default ``n=N``)."""
    per_sample = DRAW_COPIES * math.prod(data_shape) + activations_per_sample(net, data_shape) // 2
    check_fits(setting or f"n={n}", 4 * n * per_sample, device, f"{per_sample:,} numbers a sample in the solver and the network")
