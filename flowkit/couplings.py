"""Couplings: how a batch of sources x0 is paired with a batch of targets x1.

``coupling(x0, x1, y=None) -> (x0', x1')`` keeps the batch size; with labels ``y`` (class-conditional
training) the OT couplings pair only within a class, so the labels stay with their rows. Minibatch OT (Tong et al. 2024,
"Improving and generalizing flow-based generative models with minibatch optimal transport";
Pooladian et al. 2023) solves the assignment of the batch under the squared Euclidean cost and then
draws, for every x0_i, its partner x1_j from the plan's row i. An exact plan between two uniform
batches of equal size is a permutation, so every sample is used once.

Exact ``ot.emd`` always solves on the CPU: the batch goes there and the partners' indices come back, once
per batch. ``sinkhorn`` builds its cost and runs on the tensors' device through POT's torch backend.

A coupling derives from ``Coupling`` and declares, with defaults: ``independent = True`` when its pairs are
the independent product q0 x q1 (then, from a standard-normal source, the score of p_t follows from a model's
prediction: stochastic samplers and classifier guidance need it); ``data_only = True`` when it needs
nothing but the batch (no network, no teacher, no device state), so that with ``data.workers`` > 0 the
DataLoader's processes solve it on the CPU, overlapped with the training step (``flowkit.data.PairStream``);
others (pairs from a trained model) run in the training step. ``next_round(config, run_dir)`` (a classmethod)
may ask for one more run after this one, as a method's may.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import Tensor

from flowkit.errors import ContractError
from flowkit.registry import Registry


def _pot():
    """POT, imported when a plan is first solved: its import costs seconds (its backends probe torch, jax...),
    which ``flowkit list``, ``--help`` and sampling must not pay."""
    import ot

    return ot


class Coupling:
    """Base class of every coupling: ``coupling(x0, x1, y=None) -> (x0', x1')`` (module docstring)."""

    data_only: bool = False
    independent: bool = False

    def __call__(self, x0: Tensor, x1: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} defines no pairing")

    @classmethod
    def next_round(cls, config: dict, run_dir: Path) -> dict | None:
        return None


def check_coupling(name: str, obj: object) -> None:
    """The registration check: a ``Coupling`` whose call takes the labels ``y`` (class-conditional runs)."""
    if not (inspect.isclass(obj) and issubclass(obj, Coupling)):
        raise ContractError(f"coupling '{name}': {obj!r} does not derive from flowkit.couplings.Coupling")
    if "y" not in inspect.signature(obj.__call__).parameters:
        raise ContractError(f"coupling '{name}': __call__ must take the labels, (x0, x1, y=None)")


COUPLINGS: Registry = Registry("coupling", "flowkit.couplings", check=check_coupling)
register_coupling = COUPLINGS.register


def squared_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """C_ij = ||x0_i - x1_j||^2 over all data dimensions, on the inputs' device."""
    return torch.cdist(x0.flatten(1), x1.flatten(1)) ** 2


def pair_from_plan(plan: Tensor, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    """Draw j ~ plan[i, :] for every row i and return (x0, x1[j]) (the plan may sit on another device)."""
    j = torch.multinomial(plan.clamp_min(0), num_samples=1).squeeze(1)
    return x0, x1[j.to(x1.device)]


def pair_within_classes(pair, x0: Tensor, x1: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """``pair(x0, x1)`` solved separately inside each class of ``y`` (the batch positions' labels): no
    pair crosses a class, so row i's partner keeps label y_i (class-conditional minibatch OT)."""
    if y is None:
        return pair(x0, x1)
    return x0, paired_on_rows(pair, x0, x1, ((y == c).nonzero().squeeze(1) for c in torch.unique(y)))


def paired_on_rows(pair, x0: Tensor, x1: Tensor, row_sets) -> Tensor:
    """x1 reordered by ``pair(x0, x1)`` solved separately on each of the disjoint ``row_sets``."""
    paired = torch.empty_like(x1)
    for rows in row_sets:
        paired[rows] = pair(x0[rows], x1[rows])[1]
    return paired


def pair_in_blocks(coupling, x: Tensor, z: Tensor, block: int) -> Tensor:
    """``z`` reordered to pair with ``x`` by ``coupling``, solved on consecutive blocks of ``block`` rows.

    Multistep sampling of a network trained on coupled pairs re-noises its samples with source draws
    paired the same way (the ``renoise`` sampler, ``flowkit.samplers.renoise``); blocks of the training batch size give the
    interpolants the statistics the network saw (a minibatch plan is not the full-batch one)."""
    _check_batches(x, z)
    return paired_on_rows(coupling, x, z, (slice(start, start + block) for start in range(0, x.shape[0], block)))


def _check_batches(x0: Tensor, x1: Tensor) -> None:
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"coupling needs batches of equal size; got {x0.shape[0]} and {x1.shape[0]}")


@register_coupling("independent")
class Independent(Coupling):
    """pi(x0, x1) = q0(x0) q1(x1): the batch is already an independent draw."""

    data_only = True
    independent = True

    def __call__(self, x0: Tensor, x1: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_batches(x0, x1)
        return x0, x1


@register_coupling("ot")
class ExactOT(Coupling):
    """Exact minibatch OT, POT ``ot.emd`` (network simplex) on the squared Euclidean cost.

    ``num_iter_max`` is raised well above POT's default, which returns non-optimal plans from about
    2,000 points per batch.
    """

    data_only = True

    def __init__(self, num_iter_max: int = 10_000_000) -> None:
        if num_iter_max < 1:
            raise ValueError(f"num_iter_max={num_iter_max} is out of range; expected >= 1")
        self.num_iter_max = num_iter_max

    def plan(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The optimal plan, on the CPU in float64: the batches go there (n x d values, not the n x n cost)."""
        _check_batches(x0, x1)
        cost = squared_cost(x0.detach().cpu().to(torch.float64), x1.detach().cpu().to(torch.float64))
        n = cost.shape[0]
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        return _pot().emd(weights, weights, cost, numItermax=self.num_iter_max)

    def pair(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """(x0, x1[j]), j drawn from the plan's rows. The network simplex returns a vertex of the plans
        between two uniform batches of equal size, a permutation (Birkhoff): its one non-zero per row is read
        on the CPU and only the n indices go to the batch's device. A plan with split rows (possible only if
        the iteration cap stopped the solver) is sampled row by row."""
        plan = self.plan(x0, x1)
        if int((plan > 0).sum()) != plan.shape[0]:
            return pair_from_plan(plan, x0, x1)
        return x0, x1[plan.argmax(1).to(x1.device, non_blocking=True)]

    def __call__(self, x0: Tensor, x1: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return pair_within_classes(self.pair, x0, x1, y)


@register_coupling("sinkhorn")
class SinkhornOT(Coupling):
    """Entropic minibatch OT (Cuturi 2013), POT ``ot.sinkhorn`` in the log domain, on the batch's device.

    The cost is divided by its maximum so that ``reg`` has the same meaning at every data scale.
    """

    data_only = True

    def __init__(self, reg: float = 0.05, num_iter_max: int = 1000, stop_threshold: float = 1e-5) -> None:
        if not reg > 0:
            raise ValueError(f"reg={reg} is out of range; expected reg > 0")
        if num_iter_max < 1:
            raise ValueError(f"num_iter_max={num_iter_max} is out of range; expected >= 1")
        self.reg = reg
        self.num_iter_max = num_iter_max
        self.stop_threshold = stop_threshold

    def plan(self, x0: Tensor, x1: Tensor) -> Tensor:
        _check_batches(x0, x1)
        cost = squared_cost(x0, x1)
        cost = cost / cost.max().clamp_min(torch.finfo(cost.dtype).tiny)
        n = cost.shape[0]
        weights = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device)
        return _pot().sinkhorn(
            weights, weights, cost, self.reg, method="sinkhorn_log",
            numItermax=self.num_iter_max, stopThr=self.stop_threshold,
        )

    def __call__(self, x0: Tensor, x1: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return pair_within_classes(lambda a, b: pair_from_plan(self.plan(a, b), a, b), x0, x1, y)
