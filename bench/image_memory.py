"""Peak memory of decoding an image set, against the size of its uint8 array (the README's 'held as uint8'
promise): a folder of PNGs, a .npz (NHWC) and a .npy (NCHW) of synthetic 64x64 RGB images, each decoded in a fresh
process (`Images.prepare`, what training does first). Reported: the process's peak resident memory above its size
before the set was opened (Pillow already imported), divided by the array's bytes.

    python bench/image_memory.py [--images 20000] [--work DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import report

PEAK = """
import gc, sys
import PIL.Image, PIL.PngImagePlugin
from flowkit.data.images import image_array, image_folder

def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))

gc.collect()
base = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
data = image_folder(sys.argv[2]) if sys.argv[1] == "folder" else image_array(sys.argv[2])
data.prepare()
print((status("VmHWM:") - base) / data.data.numel(), data.data.numel())
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="flowkit-imgmem-"))
    work.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (args.images, 64, 64, 3), dtype=np.uint8)
    from PIL import Image

    folder = work / "folder"
    if not folder.is_dir():
        folder.mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:06d}.png")
    np.savez(work / "x.npz", images=images)
    np.save(work / "x.npy", images.transpose(0, 3, 1, 2).copy())
    rows, payload = [], {}
    for name, kind, where in (("folder of PNGs", "folder", folder), (".npz, NHWC", "array", work / "x.npz"),
                              (".npy, NCHW", "array", work / "x.npy")):
        out = subprocess.run([sys.executable, "-c", PEAK, kind, str(where)], capture_output=True, text=True,
                             check=True).stdout.split()
        ratio, size = float(out[0]), int(out[1])
        payload[name] = {"peak_over_uint8": ratio, "uint8_bytes": size}
        rows.append(f"| {name} | {size / 1e6:.0f} MB | {ratio:.2f}x |")
    lines = [f"Peak memory of decoding {args.images:,} 64x64 RGB images (`python bench/image_memory.py`):", "",
             "| source | uint8 size | peak / uint8 size |", "|---|---|---|", *rows]
    report(Path(__file__).parent / "results", "image_memory", payload, lines)


if __name__ == "__main__":
    main()
