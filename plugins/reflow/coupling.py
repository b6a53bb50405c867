"""The reflow coupling (Liu, Gong & Liu 2022, "Flow Straight and Fast", Alg. 1, k-rectified flow).

Round k+1 trains a new flow on the pairs (Z0, Z1) = (x0, Phi_k(x0)), x0 ~ source, where Phi_k is
the k-rectified flow's ODE map from t=0 to t=1. Paths of the new flow cross less, so they are
straighter and a coarse solver follows them better. The pairs are made once, on the first batch's
device, with the teacher's own sampler; each training batch then draws rows of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.couplings import Coupling
from flowkit.errors import ConfigError
from flowkit.samplers import parse_sampler, sample_with
from flowkit.teacher import check_shape, follow_teacher, load_teacher
from flowkit.plugins.reflow.pairs import generate_pairs, load_pairs, save_pairs


class ReflowCoupling(Coupling):
    """(x0, x1) -> rows of the fixed pairs (Z0, Phi(Z0)) of a teacher flow (Liu et al. 2022)."""

    def __init__(self, teacher: str = "", data_shape: tuple[int, ...] = (), pairs: int = 50_000,
                 solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 10_000,
                 cache: Optional[str] = None, seed: int = 0, rounds: int = 1) -> None:
        if rounds < 1:
            raise ConfigError(f"coupling 'reflow': rounds={rounds} is out of range; expected >= 1")
        if not teacher:
            raise ConfigError("coupling 'reflow' needs a teacher: coupling.teacher=<run dir or .ckpt of a trained flow>")
        if pairs < 1 or batch_size < 1:
            raise ConfigError(f"coupling 'reflow': pairs={pairs}, batch_size={batch_size}; expected both >= 1")
        self.teacher = check_shape(teacher, data_shape)  # fails before any run directory is made
        parse_sampler(solver)
        self.solver, self.tolerances = solver, {"rtol": rtol, "atol": atol}
        self.meta = {"teacher": str(self.teacher.resolve()), "pairs": pairs, "solver": solver, "rtol": rtol,
                     "atol": atol, "seed": seed}
        self.n, self.batch_size, self.seed = pairs, batch_size, seed
        self.cache = Path(cache) if cache else None
        self.x0: Tensor | None = None
        self.x1: Tensor | None = None
        self.by_class: tuple[Tensor, Tensor] | None = None  # (first row, row count) of each class, if labelled

    @classmethod
    def next_round(cls, config: dict, run_dir: Path) -> dict | None:
        """k-rectified flow: with ``rounds=k`` left, the flow just trained is the next round's teacher
        (and its initial weights). Each round draws its own pairs; a cache is per round."""
        spec = config["coupling"]
        if spec.get("rounds", 1) <= 1:
            return None
        cache = spec.get("cache")
        return {"coupling": {"teacher": str(run_dir), "rounds": spec["rounds"] - 1,
                             "cache": f"{cache}.round{spec['rounds'] - 1}" if cache else None},
                **follow_teacher(config, spec["teacher"], run_dir)}

    def pairs(self, device: torch.device, labelled: bool = False) -> tuple[Tensor, Tensor]:
        """The pairs on ``device``: from the cache when it matches, else generated (and cached). Labelled
        (class-conditional training): each pair (Z0, Phi(Z0 | y)) carries a label y drawn from the target."""
        if self.x0 is None:
            meta = {**self.meta, "labelled": labelled}
            cached = load_pairs(self.cache, meta) if self.cache else None
            if cached is None:
                cached = self.generate(device, labelled)
                if self.cache:
                    save_pairs(self.cache, *cached, meta)
            x0, x1, y = cached
            if y is not None:  # rows sorted by class, so a batch draws within a class by offset
                order = torch.argsort(y, stable=True)
                x0, x1, counts = x0[order], x1[order], torch.bincount(y)
                self.by_class = ((torch.cumsum(counts, 0) - counts).to(device), counts.to(device))
            self.x0, self.x1 = x0.to(device), x1.to(device)  # once: a cache loads on the CPU
        return self.x0, self.x1

    def generate(self, device: torch.device, labelled: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        model, teacher, _ = load_teacher(self.teacher)
        model = model.to(device)
        if labelled and not teacher.classes:
            raise ConfigError(f"coupling 'reflow': class-conditional training needs a class-conditional teacher; "
                              f"'{self.teacher}' was trained without labels (cond.labels=false)")
        generator = torch.Generator().manual_seed(self.seed)
        x0 = teacher.source.sample(self.n, generator)

        def sample(x: Tensor, labels: Tensor | None = None) -> Tensor:
            cond = None if labels is None else Cond(labels.to(device), None, teacher.classes)
            return sample_with(teacher.method, model, teacher.path, x, self.solver, cond=cond, **self.tolerances)[0]

        if not labelled:
            return (*generate_pairs(sample, x0, self.batch_size, device), None)
        y = teacher.target.sample_labelled(self.n, generator)[1]  # the data's class frequencies
        return (*generate_pairs(sample, x0, self.batch_size, device, labels=y), y)

    def __call__(self, x0: Tensor, x1: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Random pairs; with labels ``y``, row i draws a pair of class y_i, so the labels stay valid."""
        z0, z1 = self.pairs(x0.device, labelled=y is not None)
        if y is None:
            rows = torch.randint(z0.shape[0], (x0.shape[0],), device=x0.device)
        else:
            first, count = self.by_class
            rows = first[y] + (torch.rand(y.shape, device=y.device) * count[y]).long()
        return z0[rows], z1[rows]
