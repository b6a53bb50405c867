"""Image data a user brings: a folder of PNG / JPEG files, or an array of uint8 images.

    data.target=folder:PATH      every image under PATH (sorted); with class subfolders (PATH/cat/*.png,
                                 PATH/dog/*.png) the subfolder is the label, classes in sorted order
    data.target=images:FILE      a .npz (first array, or the one named ``images``; ``labels`` beside it if
                                 present) or .npy of uint8 images, (N, H, W, C) or (N, C, H, W), C in 1, 3
    data.resolution=R            each image resized (shorter side to R, bicubic) and centre-cropped to R x R;
                                 without it every image must have one size
    data.flip=true               random horizontal flips when drawn
    data.features=inception      scored by FID (weights found on disk; inception:WEIGHTS names the file), or by
                                 FD in another registered feature network (``flowkit.features``); default: W2;
                                 either against real images, each at most once and never flipped (FID's way)

Images are decoded once, when the run starts, into one uint8 tensor (N, C, H, W) in memory (a quarter of the
floats' size; DataLoader workers share it), so no epoch decodes a file again; they are scaled to [-1, 1] when
drawn. A file that cannot be read (truncated, not an image, an unsupported mode) or that breaks the folder's
size or channel count (a colour image among grayscale ones) is one error naming it; grayscale images in a
colour folder become RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.datasets import Rows, register_dataset
from flowkit.errors import ConfigError

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {"L": 1, "RGB": 3}  # accepted as they are; P, LA, RGBA, CMYK... are converted (alpha dropped)
CONVERTIBLE = ("1", "P", "LA", "RGBA", "CMYK", "YCbCr", "I;16", "I")


def _files(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """(image files in sorted order, their labels or None, the class names)."""
    if not root.is_dir():
        raise ConfigError(f"data.target=folder:{root}: no such folder")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subfolders:
        files, labels = [], []
        for label, folder in enumerate(subfolders):
            mine = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
            files += mine
            labels += [label] * len(mine)
        classes = [p.name for p in subfolders]
    else:
        files, labels, classes = sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES), None, []
    if not files:
        raise ConfigError(f"data.target=folder:{root}: no {', '.join(SUFFIXES)} files in it or its subfolders")
    return files, labels, classes


def _fit(image, resolution: int | None):
    """Shorter side to ``resolution`` (bicubic), then the centre square; None: unchanged."""
    from PIL import Image

    if resolution is None:
        return image
    w, h = image.size
    scale = resolution / min(w, h)
    if scale != 1:
        image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                             Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def decode(file: Path, resolution: int | None, channels: int | None) -> np.ndarray:
    """One image as uint8 (C, H, W): its mode checked (and converted to L or RGB), fitted to ``resolution``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image.load()
            mode = image.mode
            if mode not in MODES:
                if mode not in CONVERTIBLE:
                    raise ConfigError(f"{file}: image mode {mode} is not supported; expected one of "
                                      f"{', '.join([*MODES, *CONVERTIBLE])}")
                image = image.convert("L" if mode in ("1", "LA", "I;16", "I") else "RGB")
            if channels == 1 and image.mode == "RGB":
                raise ConfigError(f"{file}: a colour image among grayscale ones (the first file decides; convert "
                                  f"the folder to one mode)")
            if channels == 3 and image.mode == "L":
                image = image.convert("RGB")
            array = np.asarray(_fit(image, resolution), dtype=np.uint8)
    except ConfigError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot be read as an image ({' '.join(str(exc).split())})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_folder(root: str | Path, resolution: int | None) -> tuple[Tensor, Tensor | None, list[str]]:
    """(uint8 images (N, C, H, W), labels or None, class names) of an image folder."""
    root = Path(root)
    files, labels, classes = _files(root)
    first = decode(files[0], resolution, None)
    images = np.empty((len(files), *first.shape), dtype=np.uint8)
    images[0] = first
    for index, file in enumerate(files[1:], start=1):
        array = decode(file, resolution, first.shape[0])
        if array.shape != first.shape:
            raise ConfigError(f"{file}: size {array.shape[2]}x{array.shape[1]}, but {files[0].name} is "
                              f"{first.shape[2]}x{first.shape[1]}; set data.resolution to fit every image to one size")
        images[index] = array
    return torch.from_numpy(images), None if labels is None else torch.tensor(labels), classes


def load_image_array(file: str | Path, resolution: int | None) -> tuple[Tensor, Tensor | None]:
    """(uint8 images (N, C, H, W), labels or None) from a .npz / .npy of uint8 images in NHWC or NCHW."""
    from flowkit.datasets import check_npy_header

    file = Path(file)
    where = f"data.target=images:{file}"
    if not file.is_file():
        raise ConfigError(f"{where}: no such file")
    labels = None
    if file.suffix == ".npy":
        check_npy_header(file, "data.target")
        array = np.load(file, allow_pickle=False)
    elif file.suffix == ".npz":
        try:
            with np.load(file, allow_pickle=False) as archive:
                if not archive.files:
                    raise ConfigError(f"{where}: the archive holds no arrays")
                array = archive["images"] if "images" in archive.files else archive[archive.files[0]]
                labels = archive["labels"] if "labels" in archive.files else None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: not a readable .npz of arrays ({' '.join(str(exc).split())})") from None
    else:
        raise ConfigError(f"{where}: unsupported suffix '{file.suffix}'; valid: .npz, .npy")
    if array.dtype != np.uint8 or array.ndim != 4:
        raise ConfigError(f"{where}: expected uint8 images of shape (N, H, W, C) or (N, C, H, W); got "
                          f"{array.dtype} of shape {array.shape}")
    if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    elif array.shape[1] not in (1, 3):
        raise ConfigError(f"{where}: shape {array.shape} has no channel axis of 1 or 3 (second or last)")
    if resolution is not None and tuple(array.shape[2:]) != (resolution, resolution):
        from PIL import Image

        fitted = [_fit(Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)), resolution) for a in array]
        array = np.stack([np.asarray(f)[None] if array.shape[1] == 1 else np.asarray(f).transpose(2, 0, 1)
                          for f in fitted])
    if labels is not None and (labels.shape != (array.shape[0],) or labels.dtype.kind not in "iu"):
        raise ConfigError(f"{where}: 'labels' must hold one integer per image; got {labels.dtype} {labels.shape}")
    return torch.from_numpy(np.ascontiguousarray(array)), None if labels is None else torch.from_numpy(labels).long()


@register_dataset("folder")
def image_folder(root: str = "", resolution: int | None = None, flip: bool = False,
                 features: str | None = None) -> Images:
    """A folder of PNG / JPEG images (``data.target=folder:PATH``); class subfolders give labels."""
    images, labels, _ = load_folder(root, resolution)
    return Images(images, f"folder:{root}", labels, flip, features)


@register_dataset("images")
def image_array(file: str = "", resolution: int | None = None, flip: bool = False,
                features: str | None = None) -> Images:
    """A .npz / .npy of uint8 images, NHWC or NCHW (``data.target=images:FILE``); ``labels`` in a .npz give labels."""
    images, labels = load_image_array(file, resolution)
    return Images(images, f"images:{file}", labels, flip, features)


class Images(Rows):
    """Images held as uint8 (N, C, H, W), drawn scaled to [-1, 1], with random horizontal flips if ``flip``.
    Scored by FD in the feature network ``features`` (``data.features``; ``inception``: FID), or without one by
    W2 on the pixels, against distinct real images drawn without the flip (``reference``)."""

    bin_width = 2 / 255

    def __init__(self, images: Tensor, label: str, labels: Tensor | None = None, flip: bool = False,
                 features: str | None = None) -> None:
        from flowkit.features import metric_name

        classes = int(labels.max()) + 1 if labels is not None and labels.numel() else 0
        super().__init__(images, label, labels, classes)  # checks shape, finiteness, distinctness once
        self.data = images  # uint8: a quarter of the memory of floats
        self.flip = flip
        self.features = features
        if features is not None:
            self.metric = metric_name(features)

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        if self.features is None:
            return super().quality(samples, reference)
        from flowkit.features import fd

        return fd(samples, reference, self.features)

    def _pixels(self, rows: Tensor) -> Tensor:
        """Rows of the uint8 images, scaled to [-1, 1]."""
        return self.data[rows].float().div(127.5).sub(1)

    def _draw(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        x = self._pixels(rows)
        if self.flip:
            mirrored = torch.rand(rows.shape[0], generator=generator) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        return x

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._draw(torch.randint(self.data.shape[0], (n,), generator=generator), generator)

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        """FID's convention: the real images themselves, each at most once (all of them when ``n`` exceeds the
        set, then repeats), without the flip augmentation of training."""
        count = self.data.shape[0]
        rows = torch.cat([torch.randperm(count, generator=generator) for _ in range(-(-n // count))])[:n]
        return self._pixels(rows)

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            return super().sample_labelled(n, generator)
        rows = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self._draw(rows, generator), self.labels[rows]
