"""Hostile data files (issue: nothing lost on the new surfaces): each reproduced here first, then refused in one
line before any run directory exists, never a traceback, a hang or a silent overflow."""

import re
import struct
import zipfile
import zlib

import numpy as np
import pytest

from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.training.loop import train
from tests.helpers import run_cli, tiny


def images(n=8):
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def npz_claiming(path, shape, dtype="|u1"):
    """A .npz whose one member's header claims ``shape`` while it holds 16 bytes."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", buffer.getvalue() + bytes(16))


def damaged(path):
    np.savez(path, images=images(64))
    data = bytearray(path.read_bytes())
    data[300] ^= 0xFF  # inside the stored member: its CRC no longer holds
    path.write_bytes(bytes(data))


def truncated(path):
    np.savez(path, images=images(64))
    path.write_bytes(path.read_bytes()[:2000])


def labelled(value):
    def write(path):
        np.savez(path, images=images(), labels=np.array([0, 1, 2, 3, 0, 1, 2, value], dtype=np.int64))
    return write


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_bytes(b""), "not a readable .npz"),
    (truncated, "not a readable .npz"),
    (damaged, "not a readable .npz"),
    (lambda p: npz_claiming(p, (60_000, 256, 256, 3)), "shorter than its header claims"),
    (labelled(-1), r"'labels' must be class indices in \[0, 1048576\); found -1"),
    (labelled(2**63 - 1), r"'labels' must be class indices in \[0, 1048576\); found 9223372036854775807"),
], ids=["zero-bytes", "truncated", "bad-crc", "member-claims-11GB", "label-minus-1", "label-2^63-1"])
def test_a_hostile_image_archive_is_one_line_before_any_run_directory(tmp_path, write, message):
    path = tmp_path / "x.npz"
    write(path)
    with pytest.raises(ConfigError, match=message) as error:
        train(apply_overrides(load_recipe("digits_rectified"),
                              tiny(tmp_path, f"data.target=images:{path}", "model=unet", "model.channels=8")))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_zero_byte_file_is_one_line_exit_2_from_the_command_line(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(b"")
    key = f"data.path={path}" if suffix == ".npy" else f"data.target=images:{path}"
    proc = run_cli(["train", *tiny(tmp_path, key)], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Aborted" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(path) in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_float64_data_beyond_float32_range_is_refused_not_overflowed(tmp_path):
    data = np.random.default_rng(0).normal(size=(64, 2))
    data[3, 1] = 1e39  # finite in float64, inf in float32
    np.save(tmp_path / "x.npy", data)
    with pytest.raises(ConfigError, match=re.escape("1 of 64 samples hold NaN, inf or values beyond float32's range")):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, f"data.path={tmp_path / 'x.npy'}")))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, message", [
    ("model.depth=100000", r"depth=100000 .*out of range; expected width >= 1 and depth in \[1, 1000\]"),
])
def test_a_depth_no_network_has_is_refused_before_it_is_built(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):  # was half a minute of building on the meta device first
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, override)))
    assert not (tmp_path / "runs").exists()


PEAK = """
import gc, sys
import PIL.Image, PIL.PngImagePlugin  # the library's own memory is not the data's
from flowkit.data.images import image_array, image_folder

def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

kind, where = sys.argv[1], sys.argv[2]
image_array  # imported: the constructor below reads an archive whole, so it is measured too
gc.collect()
base = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current size
data = image_folder(where) if kind == "folder" else image_array(where)
data.prepare()
print((status("VmHWM:") - base) / data.data.numel())
"""


@pytest.mark.parametrize("kind", ["folder", "npz-nhwc", "npy-nchw"])
def test_decoding_an_image_set_peaks_within_1_3x_of_its_uint8_size(tmp_path, kind):
    """The README promises images held as uint8: a .npz or .npy set was held twice (the archive's array and a
    copy; the mapped file's pages and a copy)."""
    import subprocess
    import sys

    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2000, 64, 64, 3), dtype=np.uint8)  # 24.6 MB
    if kind == "folder":
        where = tmp_path / "images"
        where.mkdir()
        for i, image in enumerate(images[:1500]):
            Image.fromarray(image).save(where / f"{i:04d}.png")
    elif kind == "npz-nhwc":
        np.savez(where := tmp_path / "x.npz", images=images)
    else:
        np.save(where := tmp_path / "x.npy", images.transpose(0, 3, 1, 2).copy())
    proc = subprocess.run([sys.executable, "-c", PEAK, "folder" if kind == "folder" else "array", str(where)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) <= 1.3, proc.stdout
