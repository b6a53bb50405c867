"""The InceptionV3 of FID (Heusel et al. 2017): the TensorFlow graph ``inception-2015-12-05`` as torch-fidelity and
torchmetrics run it, so that its 2048 pool features, and the FID computed from them, are theirs.

What makes it that network and not torchvision's InceptionV3: images enter as uint8 levels, are resized to 299 x 299
by TensorFlow 1's bilinear rule (source coordinate = output index x in/out, no half-pixel offset), scaled by
(x - 128) / 128; convolutions have no bias and BatchNorm eps 1e-3; the average pools inside the A, C and first E
blocks leave the padding out of the mean; the last E block max-pools in its pool branch; 1008 classes.

No weights ship and none are downloaded: ``load_inception(file)`` reads the converted graph's weights from disk
(torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` or pytorch-fid's ``pt_inception-2015-12-05-
6726825d.pth``: one state dict), and ``find_weights()`` looks for them where torchmetrics / torch-fidelity and
pytorch-fid cache them (``torch.hub.get_dir()/checkpoints``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowkit.errors import ConfigError

SIZE = 299
WEIGHT_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")


def tf1_resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (N, C, H, W) to size x size as TensorFlow 1's ``resize_bilinear(align_corners=False)``:
    output pixel i reads input coordinate i * in / out (no half-pixel centres), clamped at the last pixel."""
    def axis(n_in: int) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.arange(size, dtype=torch.float32, device=x.device) * (n_in / size)
        lo = src.long()
        return lo, (lo + 1).clamp_max(n_in - 1), (src - lo).to(x.dtype)

    (y0, y1, dy), (x0, x1, dx) = axis(x.shape[2]), axis(x.shape[3])
    top, bottom = x[:, :, y0], x[:, :, y1]  # along x first, then y: TensorFlow's order, so the rounding is its too
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * dx
    return top + (bottom - top) * dy[:, None]


class Conv(nn.Sequential):
    """Convolution without bias, BatchNorm (eps 1e-3), ReLU: the graph's unit (keys ``conv.*``, ``bn.*``)."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)
        self.relu = nn.ReLU()


def _avg3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _pair(c: int, kernel: int) -> tuple[Conv, Conv]:
    """A 1 x k then k x 1 factorised pair of c -> c convolutions."""
    return Conv(c, c, (1, kernel), padding=(0, kernel // 2)), Conv(c, c, (kernel, 1), padding=(kernel // 2, 0))


class BlockA(nn.Module):
    def __init__(self, c_in: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(c_in, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(c_in, 48, 1), Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(c_in, 64, 1), Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(c_in, pool, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class BlockB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = Conv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(c_in, 64, 1), Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = Conv(c_in, 192, 1)
        self.branch7x7_1 = Conv(c_in, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(c_in, c7, 1)
        self.branch7x7dbl_2, self.branch7x7dbl_3 = reversed(_pair(c7, 7))  # 7 x 1 first
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class BlockD(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(c_in, 192, 1), Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(c_in, 192, 1)
        self.branch7x7x3_2, self.branch7x7x3_3 = _pair(192, 7)
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        d7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            d7 = layer(d7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), d7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """``max_pool``: the graph's last E block pools by max in its pool branch, the first by a padding-free mean."""

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = Conv(c_in, 320, 1)
        self.branch3x3_1 = Conv(c_in, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _pair(384, 3)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(c_in, 448, 1), Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = _pair(384, 3)
        self.branch_pool = Conv(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """Images in [-1, 1] (N, 1 or 3, H, W) -> the 2048 pool features FID is computed in (grey images repeated to
    RGB; values rounded to the 256 levels the network was given). ``logits(x)``: its 1008 class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = (BlockC(768, c) for c in (128, 160, 160, 192))
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"inception features need images (N, 1 or 3, H, W); got shape {tuple(x.shape)}")
        levels = ((x.float().clamp(-1, 1) + 1) * 127.5).round()  # the uint8 image the network is given
        x = tf1_resize(levels.expand(-1, 3, -1, -1), SIZE)
        x = (x - 128) / 128
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))

    def logits(self, x: Tensor) -> Tensor:
        return self.fc(self(x))


def find_weights() -> Path | None:
    """The FID Inception weights where torchmetrics / torch-fidelity or pytorch-fid cache them, or None."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def load_inception(weights: str | Path = "") -> InceptionV3:
    """The network with the weights in ``weights`` ('' : ``find_weights()``), frozen, in eval mode."""
    from flowkit.runtime.checkpoint import safe_load

    if not str(weights):
        found = find_weights()
        if found is None:
            folder = Path(torch.hub.get_dir()) / "checkpoints"
            raise ConfigError(f"inception: no FID Inception weights on disk (looked for {' and '.join(WEIGHT_FILES)} "
                              f"in {folder}); nothing is downloaded: give the file, e.g. "
                              f"data.features=inception:/path/to/{WEIGHT_FILES[0]}")
        weights = found
    weights = Path(weights)
    if not weights.is_file():
        raise ConfigError(f"inception:{weights}: no such file")
    state = safe_load(weights, f"inception:{weights}")
    net = InceptionV3()
    if not isinstance(state, dict):
        raise ConfigError(f"inception:{weights}: holds a {type(state).__name__}, expected a state dict")
    mine = net.state_dict()
    optional = {k for k in mine if k.endswith("num_batches_tracked")}  # older files (pytorch-fid's) lack them
    missing, unexpected = sorted(set(mine) - set(state) - optional), sorted(set(state) - set(mine))
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or wrong:
        found = [f"{len(keys)} {what}, e.g. {', '.join(keys[:3])}"
                 for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of the wrong shape")) if keys]
        raise ConfigError(f"inception:{weights}: not the FID InceptionV3's weights ({'; '.join(found)})")
    net.load_state_dict({**{k: mine[k] for k in optional}, **state})
    return net.eval().requires_grad_(False)
