"""The 2-D toys of TorchCFM (Tong et al. 2024), so that numbers and figures compare.

- ``gaussian``: N(0, I), in the shape of the other side of the pair.
- ``8gaussians``: centres at radius 5 on the axes and diagonals, covariance sqrt(0.1) I
  (TorchCFM passes var=0.1 into ``sqrt(var) * eye``), i.e. std 0.1**0.25 = 0.562 per axis.
- ``moons``: the law of torchdyn's ``generate_moons(noise=0.2)``: a point on one of two half circles (a fair coin
  picks which, the angle uniform on [0, pi]), one uniform draw in [0, 0.2) added to both coordinates; then
  ``x * 3 - 1``. Each point is drawn independently, as a model's samples are; ``moons(even=true)`` is torchdyn's
  exact layout instead (n // 2 points evenly spaced on the outer arc, the rest on the inner), where every draw of
  n repeats the same angles: a training batch then holds only batch / 2 angles per arc, and two draws agree far
  better than any sampler of the law can agree with one (``bench/moons_layout.py``: W2 0.075 between two draws of
  2,000, 0.163 from an independent draw of the law: the floor would sit at 0.46x of what an exact model scores).
- ``checkerboard``, ``2spirals``: FFJORD's toy data (Grathwohl et al. 2019), as TorchCFM's figures use.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.data.contract import Dataset, register_dataset


@register_dataset("gaussian")
class Gaussian(Dataset):
    """N(0, I) in the shape of the other side of the pair (2-D when it is the target itself)."""

    standard_normal = True

    def __init__(self, data_shape: tuple[int, ...] = (2,)) -> None:
        self.shape = tuple(data_shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, *self.shape, generator=generator)


@register_dataset("8gaussians")
class EightGaussians(Dataset):
    """Eight Gaussians of variance ``var`` on a circle of radius ``scale`` (TorchCFM's 8gaussians); labelled by mode."""

    shape = (2,)

    def __init__(self, scale: float = 5.0, var: float = 0.1) -> None:
        if scale <= 0 or var <= 0:
            raise ValueError(f"scale={scale}, var={var} are out of range; expected both > 0")
        angles = torch.arange(8) * (math.pi / 4)
        self.centers = scale * torch.stack([angles.cos(), angles.sin()], dim=1)
        self.std = math.sqrt(math.sqrt(var))

    num_classes = 8  # the mode

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mode = torch.randint(8, (n,), generator=generator)
        return self.centers[mode] + self.std * torch.randn(n, 2, generator=generator), mode

    def classify(self, x: Tensor) -> Tensor:
        """The nearest mode."""
        return torch.cdist(x.float(), self.centers.to(x.device)).argmin(1)


@register_dataset("moons")
class Moons(Dataset):
    """Two interleaved half circles (scikit-learn's make_moons layout, scaled by 3) with a uniform jitter of size
    ``noise`` along the diagonal; labelled by half circle. Independent draws of that law, or with ``even`` torchdyn's
    evenly spaced layout (the same angles in every draw of n; the module's docstring says what that does)."""

    shape = (2,)

    def __init__(self, noise: float = 0.2, even: bool = False) -> None:
        if noise < 0:
            raise ValueError(f"noise={noise} is out of range; expected >= 0")
        self.noise = noise
        self.even = even

    num_classes = 2  # 0: the outer half circle, 1: the inner one

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.even:
            n_out = n // 2
            angle = torch.cat([torch.linspace(0, math.pi, n_out, dtype=torch.float64),
                               torch.linspace(0, math.pi, n - n_out, dtype=torch.float64)])
            inner = torch.arange(n) >= n_out
        else:
            angle = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
            inner = torch.rand(n, generator=generator) < 0.5
        outer_xy = torch.stack([angle.cos(), angle.sin()], 1)
        x = torch.where(inner[:, None], torch.stack([1 - angle.cos(), 0.5 - angle.sin()], 1), outer_xy)
        x = x + torch.rand(n, 1, generator=generator, dtype=torch.float64) * self.noise
        if self.even:  # generate_moons returns outer then inner; shuffle so any prefix is a fair sample
            order = torch.randperm(n, generator=generator)
            x, inner = x[order], inner[order]
        return (x * 3 - 1).float(), inner.long()


@register_dataset("checkerboard")
class Checkerboard(Dataset):
    """Uniform on the eight black squares of a 4 x 4 board over [-4, 4]^2; labelled by square."""

    shape = (2,)

    num_classes = 8  # the square: 4 columns x 2 squares per column

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x1 = torch.rand(n, generator=generator) * 4 - 2
        u = torch.rand(n, generator=generator)
        lower = torch.randint(2, (n,), generator=generator)
        x2 = u - 2 * lower
        x2 = x2 + torch.floor(x1) % 2
        return torch.stack([x1, x2], dim=1) * 2, (torch.floor(x1).long() + 2) * 2 + lower

    def classify(self, x: Tensor) -> Tensor:
        """The square's column (4 across [-4, 4)) and half (lower: y < 0), as drawn; outside, the nearest."""
        column = torch.clamp(torch.floor(x[:, 0].float() / 2).long() + 2, 0, 3)
        return column * 2 + (x[:, 1] < 0).long()


@register_dataset("2spirals")
class TwoSpirals(Dataset):
    """Two interleaved spiral arms of 1.5 turns, radius up to about 3.3, with Gaussian noise of std 0.1."""

    shape = (2,)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        half = n // 2
        r = torch.sqrt(torch.rand(n - half, 1, generator=generator)) * (540 * 2 * math.pi / 360)
        arm = torch.cat([-torch.cos(r) * r, torch.sin(r) * r], 1) + torch.rand(n - half, 2, generator=generator) * 0.5
        x = torch.cat([arm, -arm[:half]]) / 3
        x = x + 0.1 * torch.randn(n, 2, generator=generator)
        return x[torch.randperm(n, generator=generator)]
