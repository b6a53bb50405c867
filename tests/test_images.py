"""Image data a user brings, on files the tests write: a PNG folder with class subfolders, .npz / .npy arrays in
both layouts, resizing and cropping, flips, and each bad file as one error naming it."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowkit.data.pair import build_pair
from flowkit.errors import ConfigError
from tests.helpers import run_cli, tiny


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def rgb(seed, h=10, w=12):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    for label, name in enumerate(["cat", "dog"]):
        for i in range(3):
            write_png(tmp_path / "pets" / name / f"{i}.png", rgb(10 * label + i))
    return tmp_path / "pets"


def test_a_png_folder_loads_with_labels_from_subfolders_resized_and_scaled(folder):
    _, target = build_pair("gaussian", f"folder:{folder}", None, resolution=8)
    assert target.shape == (3, 8, 8) and target.data.dtype == torch.uint8 and target.data.shape[0] == 6
    assert target.labels.tolist() == [0, 0, 0, 1, 1, 1] and target.num_classes == 2
    x, y = target.sample_labelled(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 3, 8, 8) and -1 <= x.min() < x.max() <= 1 and set(y.tolist()) == {0, 1}
    # the centre crop of the resized image: 10x12 -> shorter side 8 -> 8x10 (bicubic) -> columns 1..8
    expected = np.asarray(Image.fromarray(rgb(0)).resize((10, 8), Image.Resampling.BICUBIC))[:, 1:9]
    assert np.array_equal(target.data[0].numpy().transpose(1, 2, 0), expected)


def test_flips_mirror_about_half_of_the_draws(folder):
    _, target = build_pair("gaussian", f"folder:{folder}", None, resolution=8, flip=True)
    single = target.data[:1].float().div(127.5).sub(1)
    target.data = target.data[:1]
    x = target.sample(400, torch.Generator().manual_seed(0))
    mirrored = (x == single.flip(-1)).flatten(1).all(1)
    assert ((x == single).flatten(1).all(1) | mirrored).all() and 0.4 < mirrored.float().mean() < 0.6


def test_the_reference_is_real_images_each_at_most_once_and_never_flipped(folder):
    """FID's convention: samples are scored against the real images themselves, not the training augmentation."""
    _, target = build_pair("gaussian", f"folder:{folder}", None, resolution=8, flip=True)
    real = target.data.float().div(127.5).sub(1)
    for seed in range(5):
        reference = target.reference(6, torch.Generator().manual_seed(seed))
        rows = [int(((real == r).flatten(1).all(1)).nonzero()) for r in reference]  # fails on a flipped image
        assert sorted(rows) == list(range(6))
    assert target.reference(4, torch.Generator().manual_seed(0)).unique(dim=0).shape[0] == 4
    assert target.reference(20, torch.Generator().manual_seed(0)).shape == (20, 3, 8, 8)  # more than held: repeats


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_npz_and_npy_arrays_load_in_either_layout_with_labels(tmp_path, layout):
    images = np.stack([rgb(i, 8, 8) for i in range(5)])
    stored = images if layout == "nhwc" else images.transpose(0, 3, 1, 2)
    np.savez(tmp_path / "set.npz", images=stored, labels=np.array([0, 1, 2, 1, 0]))
    np.save(tmp_path / "set.npy", stored)
    _, with_labels = build_pair("gaussian", f"images:{tmp_path / 'set.npz'}", None)
    _, plain = build_pair("gaussian", f"images:{tmp_path / 'set.npy'}", None)
    for target in (with_labels, plain):
        assert target.shape == (3, 8, 8)
        assert np.array_equal(target.data.numpy(), images.transpose(0, 3, 1, 2))
    assert with_labels.labels.tolist() == [0, 1, 2, 1, 0] and with_labels.num_classes == 3 and plain.labels is None


def test_grayscale_images_have_one_channel(tmp_path):
    for i in range(3):
        write_png(tmp_path / "g" / f"{i}.png", rgb(i)[..., 0])
    _, target = build_pair("gaussian", f"folder:{tmp_path / 'g'}", None)
    assert target.shape == (1, 10, 12)


def test_each_bad_file_is_one_error_naming_it(tmp_path, folder):
    truncated = folder / "cat" / "1.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ConfigError, match=r"1\.png: cannot be read as an image"):
        build_pair("gaussian", f"folder:{folder}", None, resolution=8)

    for i, size in enumerate([(10, 12), (10, 12), (9, 12)]):
        write_png(tmp_path / "mixed" / f"{i}.png", rgb(i, *size))
    with pytest.raises(ConfigError, match=r"2\.png: size 12x9, but 0\.png is 12x10; set data.resolution"):
        build_pair("gaussian", f"folder:{tmp_path / 'mixed'}", None)
    assert build_pair("gaussian", f"folder:{tmp_path / 'mixed'}", None, resolution=6)[1].shape == (3, 6, 6)

    write_png(tmp_path / "modes" / "0.png", rgb(0)[..., 0])
    write_png(tmp_path / "modes" / "1.png", rgb(1))
    with pytest.raises(ConfigError, match=r"1\.png: a colour image among grayscale ones"):
        build_pair("gaussian", f"folder:{tmp_path / 'modes'}", None)

    np.save(tmp_path / "floats.npy", np.zeros((3, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ConfigError, match="expected uint8 images of shape"):
        build_pair("gaussian", f"images:{tmp_path / 'floats.npy'}", None)
    with pytest.raises(ConfigError, match="no such folder"):
        build_pair("gaussian", f"folder:{tmp_path / 'nowhere'}", None)
    with pytest.raises(ConfigError, match="data.resolution=8: dataset '8gaussians' takes no resolution"):
        build_pair("gaussian", "8gaussians", None, resolution=8)


def test_an_image_folder_trains_from_the_command_line(tmp_path, folder):
    proc = run_cli(["train", "recipe=digits_rectified", f"data.target=folder:{folder}", "data.resolution=8",
                    "data.flip=true", "data.workers=1", "model.channels=8", "cond.labels=true", "eval.solver=euler:2",
                    "eval.compare=[]",
                    "trainer.max_steps=3", "trainer.enable_progress_bar=false", "eval.n=50", "eval.repeats=1",
                    f"run_root={tmp_path / 'runs'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["train", f"data.target=folder:{folder / 'cat' / '1.png'}", *tiny(tmp_path, steps=3)], cwd=tmp_path)
    assert proc.returncode == 2 and "no such folder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---- read faithfully (issue: hostile image folders) ----

def load(folder, **options):
    return build_pair("gaussian", f"folder:{folder}", None, **options)[1]


def test_a_16_bit_png_keeps_its_range(tmp_path):
    """16-bit grayscale (values 178..63617) arrives as round(v / 257), not clipped at 255."""
    rng = np.random.default_rng(0)
    images = [rng.integers(178, 63618, size=(6, 7)).astype(np.uint16) for _ in range(3)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    with Image.open(tmp_path / "0.png") as check:
        assert check.mode.startswith("I")  # Pillow reads it as 16 / 32-bit integers
    data = load(tmp_path).data
    expected = np.stack([np.round(image / 257).astype(np.uint8) for image in images])[:, None]
    assert np.array_equal(data.numpy(), expected)
    assert (data == 255).float().mean() < 0.01


@pytest.mark.parametrize("mode, channels", [("1", 1), ("L", 1), ("LA", 1), ("P", 3), ("RGB", 3), ("RGBA", 3)])
def test_every_mode_pillow_reads_arrives_with_its_true_range(tmp_path, mode, channels):
    base = [Image.fromarray(rgb(i)) for i in range(3)]
    for i, image in enumerate(base):
        image.convert(mode).save(tmp_path / f"{i}.png")
    data = load(tmp_path).data
    assert data.shape == (3, channels, 10, 12)
    for i, image in enumerate(base):
        converted = image.convert(mode).convert("L" if channels == 1 else "RGB")
        want = np.asarray(converted)
        assert np.array_equal(data[i].numpy().squeeze(0) if channels == 1 else data[i].numpy().transpose(1, 2, 0),
                              want), mode


def test_images_beside_class_subfolders_are_refused_in_one_line(tmp_path, folder):
    for i in range(2):
        write_png(folder / f"loose{i}.png", rgb(50 + i))
    with pytest.raises(ConfigError, match=r"2 images at the top level beside class subfolders \(cat, dog\)"):
        load(folder)


def test_an_empty_class_folder_is_one_line_and_never_dropped(tmp_path, folder):
    (folder / "zebra").mkdir()  # last in sort order: it used to vanish, 3 classes read as 2
    with pytest.raises(ConfigError, match=r"class folder 'zebra' has no \.png, \.jpg, \.jpeg files"):
        load(folder)


def test_an_unreadable_class_folder_is_one_line(tmp_path, folder, monkeypatch):
    import os

    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("dog"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root reads any folder: the refusal is simulated
    with pytest.raises(ConfigError, match=r"dog: cannot be listed \(Permission denied\)"):
        load(folder)


def test_a_fifo_named_like_an_image_is_refused_and_never_opened(tmp_path, folder):
    import os
    import signal

    os.mkfifo(folder / "cat" / "9.png")

    def hang(*_):
        raise TimeoutError("reading the folder hung on the FIFO")

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        with pytest.raises(ConfigError, match=r"9\.png: not a regular file"):
            load(folder)
    finally:
        signal.alarm(0)


def test_a_symlink_loop_in_the_folder_does_not_recurse(tmp_path, folder):
    (folder / "cat" / "loop").symlink_to(folder / "cat", target_is_directory=True)
    assert load(folder).count == 6


def test_an_image_over_the_pixel_bound_is_one_line(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    for i in range(3):
        write_png(tmp_path / f"{i}.png", rgb(i))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # a 20000 x 20000 header, scaled down
    with pytest.raises(ConfigError, match=r"0\.png: 12x10 = 120 pixels, over the bound of 100"):
        load(tmp_path)
