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

An image set is read through a source that decodes rows in order on demand (``ImageSource``): training in memory
decodes every image once, when the run starts (``prepare``), into one uint8 tensor (N, C, H, W) (a quarter of
the floats' size; DataLoader workers share it), so no epoch decodes a file again; ``flowkit encode`` reads the
rows a shard at a time instead, so a set larger than memory is never held whole, and scoring decodes only the
reference images it draws. Pixels are scaled to [-1, 1] when drawn. A file that cannot be read (truncated, not
an image, an unsupported mode) or that breaks the folder's size or channel count (a colour image among grayscale
ones) is one error naming it; grayscale images in a colour folder become RGB.

Every mode Pillow reads arrives with its true range: 1, L, LA, P, RGB, RGBA, CMYK... through Pillow's conversion to
L or RGB (alpha dropped), 16-bit integers (I;16, I: a 16-bit PNG) as round(v / 257), floats (F) in [0, 1] as
round(255 v). Only regular files are opened (a FIFO named x.png would block: one error), links to folders are not
followed, an image whose header claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels is refused before it is
decoded. With class subfolders, images beside them at the top level are refused (they have no class), and a class
folder that is empty or cannot be listed is one error (a class is never silently dropped).
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.data.arrays import check_npy_header, read_npz
from flowkit.data.contract import Dataset, register_dataset
from flowkit.errors import ConfigError

MAX_CLASSES = 2**20  # class indices a label embedding takes (ImageNet-21k has 21,841)

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {"L": 1, "RGB": 3}  # accepted as they are; P, LA, RGBA, CMYK... are converted (alpha dropped)
CONVERTIBLE = ("1", "P", "PA", "LA", "La", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
WIDE = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # integers: 16-bit samples (PNG), 0..65535 -> 0..255
FLOAT = ("F",)  # floats in [0, 1] -> 0..255


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries, sorted by name, hidden ones aside; a folder that cannot be listed is one error."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot be listed ({exc.strerror or exc})") from None


def _images(folder: Path) -> list[Path]:
    """The image files under ``folder``, sorted, its subfolders included (links to folders are not followed, so a
    link loop cannot recurse). A name with an image suffix that is not a regular file (a FIFO, a device, a socket)
    is one error: opening it could block forever."""
    found = []
    for entry in _entries(folder):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            found += _images(path)
        elif path.suffix.lower() in SUFFIXES:
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
            if not regular:
                raise ConfigError(f"{path}: not a regular file (a FIFO, device or socket named like an image); "
                                  "remove it from the folder")
            found.append(path)
    return found


def _files(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """(image files in sorted order, their labels or None, the class names). With class subfolders, every one must
    hold images (an empty class is an error, never a class silently dropped) and no image may sit beside them at
    the top level (refused: it has no class)."""
    if not root.is_dir():
        raise ConfigError(f"data.target=folder:{root}: no such folder")
    entries = _entries(root)
    subfolders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=True)]
    loose = [Path(e.path) for e in entries if not e.is_dir(follow_symlinks=True)
             and Path(e.name).suffix.lower() in SUFFIXES]
    wanted = ", ".join(SUFFIXES)
    if subfolders:
        if loose:
            raise ConfigError(f"data.target=folder:{root}: {len(loose)} images at the top level beside class "
                              f"subfolders ({', '.join(p.name for p in subfolders)}); an image there has no class: "
                              "move it into a class folder, or point data.target at a folder of one kind")
        files, labels = [], []
        for label, folder in enumerate(subfolders):
            mine = _images(folder)
            if not mine:
                raise ConfigError(f"data.target=folder:{root}: class folder '{folder.name}' has no {wanted} files; "
                                  "add images or remove it (its class would be lost)")
            files += mine
            labels += [label] * len(mine)
        classes = [p.name for p in subfolders]
    else:
        files, labels, classes = _images(root), None, []
    if not files:
        raise ConfigError(f"data.target=folder:{root}: no {wanted} files in it or its subfolders")
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
        with warnings.catch_warnings(), Image.open(file) as image:  # the bound is ours to say, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = image.size
            if w * h > (Image.MAX_IMAGE_PIXELS or float("inf")):  # checked on the header, before decoding
                raise ConfigError(f"{file}: {w}x{h} = {w * h} pixels, over the bound of {Image.MAX_IMAGE_PIXELS} "
                                  "(a decompression bomb, or an image to shrink first)")
            image.load()
            mode = image.mode
            if mode in WIDE or mode in FLOAT:
                image = Image.fromarray(_eight_bit(np.asarray(image), mode, file))
            elif mode not in MODES:
                if mode not in CONVERTIBLE:
                    raise ConfigError(f"{file}: image mode {mode} is not supported; expected one of "
                                      f"{', '.join([*MODES, *CONVERTIBLE, *WIDE, *FLOAT])}")
                image = image.convert("L" if mode in ("1", "LA", "La") else "RGB")
            if channels == 1 and image.mode == "RGB":
                raise ConfigError(f"{file}: a colour image among grayscale ones (the first file decides; convert "
                                  f"the folder to one mode)")
            if channels == 3 and image.mode == "L":
                image = image.convert("RGB")
            array = np.asarray(_fit(image, resolution), dtype=np.uint8)
    except ConfigError:
        raise
    except Image.DecompressionBombError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"{file}: cannot be read as an image ({' '.join(str(exc).split())})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _eight_bit(array: np.ndarray, mode: str, file: Path) -> np.ndarray:
    """A wide grayscale image as uint8 with its true range: 16-bit samples v -> round(v / 257) (65535 -> 255),
    floats in [0, 1] -> round(255 v); values outside that range are an error naming the file."""
    low, high, scale = (0.0, 1.0, 255.0) if mode in FLOAT else (0, 65535, 1 / 257)
    lo, hi = array.min(), array.max()
    if not (np.isfinite(lo) and np.isfinite(hi) and low <= lo and hi <= high):
        raise ConfigError(f"{file}: mode {mode} values {lo}..{hi} are outside {low}..{high}; save it as 8- or 16-bit")
    return np.rint(array.astype(np.float64) * scale).astype(np.uint8)


class ImageSource:
    """The rows of an image set in a fixed order, decoded on demand: ``count``, ``shape`` (C, H, W), ``labels``
    (one per row, or None) and ``take(rows) -> uint8 (n, C, H, W)``."""

    count: int
    shape: tuple[int, int, int]
    labels: Tensor | None

    def take(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class FolderSource(ImageSource):
    """The image files of a folder (``_files``), each decoded when it is taken; the first decides the size and
    the channels."""

    def __init__(self, root: Path, resolution: int | None) -> None:
        self.files, labels, self.classes = _files(root)
        self.resolution = resolution
        self.labels = None if labels is None else torch.tensor(labels)
        self.count = len(self.files)
        first = decode(self.files[0], resolution, None)
        self.shape = tuple(first.shape)

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        for i, row in enumerate(rows):
            array = decode(self.files[row], self.resolution, self.shape[0])
            if array.shape != self.shape:
                raise ConfigError(f"{self.files[row]}: size {array.shape[2]}x{array.shape[1]}, but "
                                  f"{self.files[0].name} is {self.shape[2]}x{self.shape[1]}; set data.resolution to "
                                  f"fit every image to one size")
            out[i] = array
        return out


class ArraySource(ImageSource):
    """A .npz / .npy of uint8 images in NHWC or NCHW; a .npy is memory-mapped (rows read when taken), a .npz read
    whole (its members cannot be mapped). Images of another size are fitted to ``resolution`` when taken."""

    def __init__(self, file: Path, resolution: int | None) -> None:
        where = f"data.target=images:{file}"
        if not file.is_file():
            raise ConfigError(f"{where}: no such file")
        labels = None
        if file.suffix == ".npy":
            check_npy_header(file, "data.target")
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        elif file.suffix == ".npz":
            members = read_npz(file, where, lambda names: ["images" if "images" in names else names[0]]
                               + (["labels"] if "labels" in names else []))
            array = members.get("images", next(iter(members.values())))
            labels = members.get("labels")
        else:
            raise ConfigError(f"{where}: unsupported suffix '{file.suffix}'; valid: .npz, .npy")
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ConfigError(f"{where}: expected uint8 images of shape (N, H, W, C) or (N, C, H, W); got "
                              f"{array.dtype} of shape {array.shape}")
        if array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
            self.nhwc = True
        elif array.shape[1] in (1, 3):
            self.nhwc = False
        else:
            raise ConfigError(f"{where}: shape {array.shape} has no channel axis of 1 or 3 (second or last)")
        if labels is not None and (labels.shape != (array.shape[0],) or labels.dtype.kind not in "iu"):
            raise ConfigError(f"{where}: 'labels' must hold one integer per image; got {labels.dtype} {labels.shape}")
        if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
            raise ConfigError(f"{where}: 'labels' must be class indices in [0, {MAX_CLASSES}); found "
                              f"{labels.min() if labels.min() < 0 else labels.max()}")
        if array.shape[0] == 0:
            raise ConfigError(f"{where}: expected an array of shape (n >= 1, *data_shape); got {tuple(array.shape)}")
        self.array, self.resolution = array, resolution
        self.labels = None if labels is None else torch.from_numpy(labels).long()
        self.count = array.shape[0]
        channels, h, w = (array.shape[3], *array.shape[1:3]) if self.nhwc else array.shape[1:]
        self.shape = (channels, resolution, resolution) if resolution is not None else (channels, h, w)
        self.file, self.fits = file, self.shape[1:] == (h, w)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if len(rows) == self.count and self.fits and np.array_equal(rows, np.arange(self.count)):
            # the whole set (Images.data): the array itself, no copy (NHWC as an NCHW view); a mapped .npy is read
            # into memory once instead of being copied out of its mapped pages
            array = self.array if isinstance(self.array, np.ndarray) and not isinstance(self.array, np.memmap) \
                else np.load(self.file, allow_pickle=False)
            return array.transpose(0, 3, 1, 2) if self.nhwc else array
        array = self.array[rows]
        array = array.transpose(0, 3, 1, 2) if self.nhwc else array
        if tuple(array.shape[1:]) != self.shape:
            from PIL import Image

            fitted = [_fit(Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)), self.resolution)
                      for a in array]
            array = np.stack([np.asarray(f)[None] if array.shape[1] == 1 else np.asarray(f).transpose(2, 0, 1)
                              for f in fitted])
        return np.ascontiguousarray(array)


@register_dataset("folder")
def image_folder(root: str = "", resolution: int | None = None, flip: bool = False,
                 features: str | None = None) -> Images:
    """A folder of PNG / JPEG images (``data.target=folder:PATH``); class subfolders give labels."""
    return Images(FolderSource(Path(root), resolution), f"folder:{root}", flip, features)


@register_dataset("images")
def image_array(file: str = "", resolution: int | None = None, flip: bool = False,
                features: str | None = None) -> Images:
    """A .npz / .npy of uint8 images, NHWC or NCHW (``data.target=images:FILE``); ``labels`` in a .npz give labels."""
    return Images(ArraySource(Path(file), resolution), f"images:{file}", flip, features)


def to_unit(images: Tensor) -> Tensor:
    """uint8 images scaled to [-1, 1] (in place on the new float tensor: one allocation)."""
    return images.float().div_(127.5).sub_(1)


class Images(Dataset):
    """Images held as uint8 (N, C, H, W), drawn scaled to [-1, 1], with random horizontal flips if ``flip``.
    Scored by FD in the feature network ``features`` (``data.features``; ``inception``: FID), or without one by
    W2 on the pixels, against distinct real images drawn without the flip (``reference``). The whole set is
    decoded by ``prepare`` (or the first draw); ``read`` and ``reference`` decode only the rows they return."""

    bin_width = 2 / 255
    pixels = True

    def __init__(self, source: ImageSource, label: str, flip: bool = False, features: str | None = None) -> None:
        from flowkit.metrics.features import metric_name

        self.source, self.label, self.flip, self.features = source, label, flip, features
        self.shape = tuple(source.shape)
        self.labels = source.labels
        self.num_classes = int(self.labels.max()) + 1 if self.labels is not None and self.labels.numel() else 0
        self.count = source.count
        self._data: Tensor | None = None
        if features is not None:
            self.metric = metric_name(features)

    @property
    def data(self) -> Tensor:
        """Every image, uint8 (N, C, H, W), decoded once."""
        if self._data is None:
            data = torch.from_numpy(self.source.take(np.arange(self.count)))
            if self.count < 2 or all(torch.equal(data[i], data[0]) for i in range(1, self.count)):  # no N-size mask
                raise ConfigError(f"{self.label}: all {self.count} images are the same; a distribution to learn "
                                  f"needs at least 2 distinct images")
            self._data = data
        return self._data

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value
        self.count = value.shape[0]

    def prepare(self) -> None:
        self.data  # noqa: B018 - decodes every image now, before training

    def _rows(self, rows: Tensor) -> Tensor:
        """uint8 rows: from memory once decoded, else decoded from the source."""
        if self._data is not None:
            return self._data.index_select(0, rows)
        order = rows.argsort()
        taken = torch.from_numpy(self.source.take(rows[order].numpy()))
        return taken[order.argsort()]

    def read(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        return to_unit(self._rows(rows)), None if self.labels is None else self.labels[rows]

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        if self.features is None:
            return super().quality(samples, reference)
        from flowkit.metrics.features import fd

        return fd(samples, reference, self.features)

    def _draw(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        x = to_unit(self.data.index_select(0, rows))
        if self.flip:
            mirrored = torch.rand(rows.shape[0], generator=generator) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        return x

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._draw(torch.randint(self.count, (n,), generator=generator), generator)

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        """FID's convention: the real images themselves, each at most once (all of them when ``n`` exceeds the
        set, then repeats), without the flip augmentation of training."""
        rows = torch.cat([torch.randperm(self.count, generator=generator) for _ in range(-(-n // self.count))])[:n]
        return to_unit(self._rows(rows))

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            raise ConfigError(f"{self.label} has no class labels")
        rows = torch.randint(self.count, (n,), generator=generator)
        return self._draw(rows, generator), self.labels[rows]
