"""Latent flow matching on real data, on a CPU: the digits at 32x32 trained in pixel space, through
`space-to-depth` (an exact, invertible 2x2 pixel unshuffle: codes 4 x 16 x 16) and through a small AutoencoderKL
this script trains on the digits (codes 4 x 8 x 8, 4x fewer numbers than the pixels), each with the same recipe
(`digits32_unet`: rectified flow, the small UNet, batch 32), steps and seeds. Every number comes through the CLI:
`flowkit train` (in memory, `data.encoder=space-to-depth`), `flowkit encode` (the autoencoder's shards), `flowkit
train data.target=shards:DIR`. The UNet on 4 x 16 x 16 codes does a quarter of the pixel UNet's work at the same
width; a row at twice the width (about the pixel run's work) shows what that costs. FD to the held-out split in the shipped classifier's features (decoded samples,
averaged back to 8x8), `euler:50`, 1,000 samples on the same noise; mean ± std over the seeds.

The autoencoder: diffusers' AutoencoderKL (grey in and out, widths 16 / 32 / 32, one block a level, 4 latent
channels, 4x downsampling), trained here by AdamW on reconstruction MSE + 1e-6 KL on the training split, then
its codes scaled to unit variance (its config's scaling_factor, as Stable Diffusion's VAE), saved with
`save_pretrained`. Reported: its training time and the reconstruction error on the held-out split (MSE on
[-1, 1] and PSNR), and the FD of its reconstructions (the latent pipeline's own floor).

    python bench/latent_digits.py [--steps 2000] [--seeds 0 1 2] [--ae-steps 2000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import flowkit, report, trained
from flowkit.config.build import load_run
from flowkit.data.digits import Digits

SOLVER = "euler:50"
AE = {"in_channels": 1, "out_channels": 1, "down_block_types": ["DownEncoderBlock2D"] * 3,
      "up_block_types": ["UpDecoderBlock2D"] * 3, "block_out_channels": [16, 32, 32], "layers_per_block": 1,
      "latent_channels": 4, "norm_num_groups": 8, "sample_size": 32}
AE_BATCH = 32


def train_autoencoder(folder: Path, steps: int, seed: int = 0) -> dict:
    """Train the small AutoencoderKL on the digits' training split at 32x32; save it to ``folder``."""
    from diffusers import AutoencoderKL

    if (folder / "trained.json").is_file():
        return json.loads((folder / "trained.json").read_text())
    torch.manual_seed(seed)
    vae = AutoencoderKL(**AE)
    train, test = Digits("train", resolution=32).data, Digits("test", resolution=32).data
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        batch = train[torch.randint(train.shape[0], (AE_BATCH,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        loss = (reconstruction - batch).pow(2).mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine to 0
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
    seconds = time.perf_counter() - start
    vae.eval()
    with torch.no_grad():
        codes = vae.encode(train).latent_dist.mean
        vae.register_to_config(scaling_factor=float(1 / codes.std()))
        reconstruction = vae.decode(vae.encode(test).latent_dist.mean).sample
    mse = float((reconstruction - test).pow(2).mean())
    from flowkit.metrics.features import fd

    result = {"steps": steps, "seconds": seconds, "parameters": sum(p.numel() for p in vae.parameters()),
              "test_mse": mse, "test_psnr": 10 * math.log10(4 / mse), "scaling_factor": vae.config.scaling_factor,
              "reconstruction_fd": fd(reconstruction, test, "digits")}
    vae.save_pretrained(folder)
    (folder / "trained.json").write_text(json.dumps(result, indent=2))
    return result


@torch.no_grad()
def fd_of(run: Path, n: int) -> float:
    _, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    x1, _ = parts.sample(x0, SOLVER)
    return parts.target.quality(x1, parts.target.reference(n, torch.Generator().manual_seed(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ae-steps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (re-used when run again)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    autoencoder = train_autoencoder(work / "autoencoder", args.ae_steps)
    print("autoencoder", autoencoder, flush=True)
    codes = work / "codes"
    if not (codes / "index.json").is_file():
        flowkit("encode", "data.target=digits", "data.resolution=32", f"data.encoder=autoencoder-kl:{work / 'autoencoder'}",
                f"out={codes}")
    spaces = {"pixels (1x32x32)": [],
              "space-to-depth (4x16x16)": ["data.encoder=space-to-depth"],
              "space-to-depth, UNet width 32 (4x16x16)": ["data.encoder=space-to-depth", "model.channels=32"],
              "trained autoencoder (4x8x8)": [f"data.target=shards:{codes}", "data.resolution=null", "model.mults=[1,2]"]}
    rows = []
    for space, extra in spaces.items():
        values, seconds = [], []
        for seed in args.seeds:
            key = "".join(c for c in space.split("(")[0] if c.isalnum())
            run, summary = trained(work / f"{key}-{seed}", "recipe=digits32_unet", f"trainer.max_steps={args.steps}",
                                   f"seed={seed}", *extra)
            values.append(fd_of(run, args.n))
            seconds.append(summary["train_seconds"])
            print(space, seed, values[-1], flush=True)
        rows.append({"space": space, "fd": values, "fd_mean": statistics.fmean(values),
                     "fd_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "train_s": statistics.fmean(seconds), "floor": summary["floor"]})
    lines = [f"Digits at 32x32, recipe digits32_unet, {args.steps} steps at batch 32 per run, seeds "
             f"{', '.join(map(str, args.seeds))}; FD of {args.n} decoded samples ({SOLVER}) to the held-out split: "
             f"`python bench/latent_digits.py --steps {args.steps}`", "",
             "| space | FD (mean ± std over seeds) | per seed | train time |", "|---|---|---|---|"]
    lines += [f"| {r['space']} | {r['fd_mean']:.2f} ± {r['fd_std']:.2f} | {', '.join(f'{v:.2f}' for v in r['fd'])} | "
              f"{r['train_s'] / 60:.1f} min |" for r in rows]
    a = autoencoder
    lines += ["", f"Autoencoder: {a['parameters'] / 1e6:.2f} M parameters, {a['steps']} AdamW steps at batch {AE_BATCH} in "
                  f"{a['seconds'] / 60:.1f} min on the CPU; held-out reconstruction MSE {a['test_mse']:.4f} on [-1, 1] "
                  f"(PSNR {a['test_psnr']:.1f} dB), FD of its reconstructions {a['reconstruction_fd']:.2f} (the "
                  f"latent pipeline's floor; pixels: {rows[0]['floor']:.2f}, 500 training images)."]
    report(args.out, "latent_digits", {"steps": args.steps, "seeds": args.seeds, "n": args.n, "rows": rows,
                                       "autoencoder": autoencoder}, lines)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
