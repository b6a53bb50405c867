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

from flowkit.errors import ConfigError
from flowkit.evaluate import solver_options
from flowkit.teacher import check_shape, follow_teacher, load_teacher
from plugins.reflow.pairs import generate_pairs, load_pairs, save_pairs


class ReflowCoupling:
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
        self.solver = solver_options(solver, rtol, atol)
        self.meta = {"teacher": str(self.teacher.resolve()), "pairs": pairs, "solver": solver, "rtol": rtol,
                     "atol": atol, "seed": seed}
        self.n, self.batch_size, self.seed = pairs, batch_size, seed
        self.cache = Path(cache) if cache else None
        self.x0: Tensor | None = None
        self.x1: Tensor | None = None

    @staticmethod
    def next_round(config: dict, run_dir: Path) -> dict | None:
        """k-rectified flow: with ``rounds=k`` left, the flow just trained is the next round's teacher
        (and its initial weights). Each round draws its own pairs; a cache is per round."""
        spec = config["coupling"]
        if spec.get("rounds", 1) <= 1:
            return None
        cache = spec.get("cache")
        return {"coupling": {"teacher": str(run_dir), "rounds": spec["rounds"] - 1,
                             "cache": f"{cache}.round{spec['rounds'] - 1}" if cache else None},
                **follow_teacher(config, spec["teacher"], run_dir)}

    def pairs(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """The pairs on ``device``: from the cache when it matches, else generated (and cached)."""
        if self.x0 is None:
            cached = load_pairs(self.cache, self.meta) if self.cache else None
            if cached is None:
                model, method, cfg = load_teacher(self.teacher)
                from flowkit.data import build_pair

                source, _ = build_pair(cfg["data"]["source"], cfg["data"]["target"], cfg["data"]["path"])
                x0 = source.sample(self.n, torch.Generator().manual_seed(self.seed))
                sample = lambda x, **kw: method.sample(model.to(device), x, **kw)  # noqa: E731
                cached = generate_pairs(sample, x0, self.batch_size, device, **self.solver)
                if self.cache:
                    save_pairs(self.cache, *cached, self.meta)
            self.x0, self.x1 = (z.to(device) for z in cached)  # once: a cache loads on the CPU
        return self.x0, self.x1

    def __call__(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        z0, z1 = self.pairs(x0.device)
        rows = torch.randint(z0.shape[0], (x0.shape[0],), device=x0.device)
        return z0[rows], z1[rows]
