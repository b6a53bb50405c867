"""Loading: the (source, target) pair a recipe names, and a Lightning DataModule of paired batches.

Batch k is a pure function of (seed, k, rank), so a resumed run redraws the same batches; loader processes
(``data.workers``) may also solve a data-only coupling (minibatch OT) off the training step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from flowkit.data.arrays import Rows, load_array
from flowkit.data.contract import DATASETS, Dataset
from flowkit.data.encoders import Encoder, build_encoder
from flowkit.errors import ConfigError, ContractError


def dataset_spec(value: Any, key: str) -> dict[str, Any]:
    """A dataset setting as a registry spec: ``NAME``, ``NAME:ARG`` (ARG its first option) or a mapping
    ``{name: NAME[:ARG], option: value, ...}`` (``data.target.arms=5`` on the command line)."""
    if isinstance(value, str):
        return DATASETS.parse(value, key)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        options = dict(value)
        spec = DATASETS.parse(options.pop("name"), key)
        spec.update(options)
        return spec
    raise ConfigError(f"{key}={value!r}: expected a dataset name (flowkit list), NAME:ARG, or a mapping with a name")


def dataset_label(value: Any) -> str:
    """One line for a dataset setting: ``moons``, ``folder:PATH``, ``pinwheel(arms=5, noise=0.1)``."""
    if isinstance(value, Mapping):
        options = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name')}({options})" if options else str(value.get("name"))
    return str(value)


def build_pair(source: Any, target: Any, path: str | None, resolution: int | None = None,
               flip: bool = False, features: str | None = None, prepare: bool = True, encoder: str | None = None,
               built: Encoder | None = None) -> tuple[Dataset, Dataset]:
    """The (source, target) datasets a recipe's ``data`` section names; ``path``: a user array as target.
    ``target`` may carry an argument, ``name:ARG`` (``folder:PATH``, ``images:FILE``): the dataset's first option;
    ``resolution``, ``flip`` and ``features`` go to a target that takes them (image data) and are refused by any
    other. ``encoder`` (``data.encoder``; ``built``: that encoder already built): the target is the data's latent
    codes (``Latent``; with ``flip`` the mirror images are encoded too), or shards of codes of that encoder.
    ``prepare``: the target reads what its draws need now (``Dataset.prepare``; a bad file fails here)."""
    if path is not None:
        tgt = Rows(load_array(path), f"data.path={path!r}")
    else:
        spec = dataset_spec(target, "data.target")  # name:ARG is the first option
        name = spec["name"]
        options = {"resolution": resolution, "flip": flip and not encoder, "features": features}
        asked = {key: value for key, value in options.items() if value not in (None, False) and key not in spec}
        takes = DATASETS.options(name) if asked else []
        for key, value in asked.items():
            if key not in takes:
                raise ConfigError(f"data.{key}={value}: dataset '{name}' takes no {key} (image data does: "
                                  f"folder:PATH, images:FILE)")
        spec.update(asked)
        tgt = DATASETS.build(spec)
    if encoder is not None:
        tgt = encoded(tgt, encoder, built, flip)
    check_shape(tgt, "data.target" if path is None else "data.path")
    if prepare:
        tgt.prepare()
        check_draw(tgt, "data.target" if path is None else "data.path")
    src = DATASETS.build(dataset_spec(source, "data.source"), data_shape=tgt.shape)
    check_shape(src, "data.source")
    check_draw(src, "data.source")
    if tuple(src.shape) != tuple(tgt.shape):
        raise ConfigError(f"data.source '{dataset_label(source)}' has shape {tuple(src.shape)} but the target has {tuple(tgt.shape)}")
    return src, tgt


def check_shape(dataset: Dataset, key: str) -> None:
    """The dataset contract's ``shape``: a tuple of sizes >= 1 (ContractError naming the dataset)."""
    shape = dataset.shape
    if not (isinstance(shape, tuple) and shape and all(isinstance(d, int) and d >= 1 for d in shape)):
        raise ContractError(f"{key}: dataset {type(dataset).__name__} has shape={shape!r}; expected a tuple of sizes "
                            f">= 1 (its data's shape, without the batch)")


def check_draw(dataset: Dataset, key: str) -> None:
    """A first draw against the contract: ``sample(2, generator)`` is a float tensor of shape (2, *shape)."""
    x = dataset.sample(2, torch.Generator().manual_seed(0))
    if not isinstance(x, Tensor) or tuple(x.shape) != (2, *dataset.shape) or not x.is_floating_point():
        got = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
        raise ContractError(f"{key}: dataset {type(dataset).__name__}.sample(2, generator) gave {got}; expected a "
                            f"float tensor of shape (2, {', '.join(map(str, dataset.shape))})")


def encoded(data: Dataset, encoder: str, built: Encoder | None, flip: bool) -> Dataset:
    """``data`` as codes of ``encoder``: a ``Latent`` of it, or itself when it holds that encoder's codes already."""
    if data.encoded_by is None:
        from flowkit.data.latent import Latent

        return Latent(data, built or build_encoder(encoder, data.shape), encoder, flip=flip)
    if data.encoded_by != encoder:
        raise ConfigError(f"data.encoder={encoder}, but the target holds codes of data.encoder={data.encoded_by}")
    if flip:
        raise ConfigError("data.flip=true: the target holds codes already; its mirror images were encoded (or not) "
                          "when it was written (flowkit encode data.flip=true)")
    return data


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A seed that is a pure function of (run seed, optimizer step, process rank): a resumed run
    redraws the same batches, and DDP ranks draw different ones."""
    return hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF


class PairStream(IterableDataset):
    """Endless batches {"x0": source, "x1": target[, "y": target labels]}; batch k is drawn from
    ``step_seed(seed, k, rank)`` (the target's ``training_batch``: fresh draws, or a streamed dataset's epochs). ``labelled`` adds the target's labels (class-conditional training).

    With a ``coupling`` the stream also pairs each batch (a data-only coupling: independent, ot, sinkhorn),
    its random draws seeded by the step too, so that loader processes can solve minibatch OT off the
    training loop. Read by ``workers`` DataLoader processes, worker w draws batches start + w, start + w + W,
    ...; the DataLoader takes them round-robin, so batch k is the same for every number of workers."""

    def __init__(self, source: Dataset, target: Dataset, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, labelled: bool = False, coupling=None, ranks: int = 1) -> None:
        self.source, self.target = source, target
        self.batch_size, self.seed, self.start, self.rank, self.labelled = batch_size, seed, start, rank, labelled
        self.coupling, self.ranks = coupling, ranks

    def __iter__(self):
        worker = get_worker_info()
        step, stride = (self.start + worker.id, worker.num_workers) if worker else (self.start, 1)
        generator = torch.Generator()
        while True:
            generator.manual_seed(step_seed(self.seed, step, self.rank))
            x0 = self.source.sample(self.batch_size, generator)
            x1, y = self.target.training_batch(step, self.batch_size, generator, self.seed, self.rank, self.ranks,
                                                 self.labelled)
            batch = {"x0": x0, "x1": x1, **({"y": y} if self.labelled else {})}
            yield self.coupled(batch, step) if self.coupling is not None else batch
            step += stride

    def coupled(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        with torch.random.fork_rng(devices=[]):  # the coupling's draws (e.g. from a sinkhorn plan), per step
            torch.manual_seed(step_seed(self.seed + 2, step, self.rank))
            x0, x1 = self.coupling(batch["x0"], batch["x1"], **({"y": batch["y"]} if self.labelled else {}))
        return {**batch, "x0": x0, "x1": x1}
