"""Every GPU row of the README in one call (`bash bench/gpu.sh`, which installs the wheels prepared beside it and
runs this), one JSON out (`results/gpu.json`, and a table in `results/gpu.md`):

1. training steps/s on the 2-D MLP (3 x 256, gaussian -> 8gaussians, I-CFM) at batch 256 and 4096: flowkit
   eager and with `trainer.compile=reduce-overhead`, against TorchCFM's and flow_matching's documented loops
   (`bench/throughput.py`'s peers, same network, data and optimiser);
2. OT-CFM at batch 1024: flowkit `recipe=ot_cfm` (exact minibatch OT in the step) against TorchCFM's
   `ExactOptimalTransportConditionalFlowMatcher` loop;
3. dopri5 (rtol = atol = 1e-5) on 100,000 2-D points: flowkit's `solve` against flow_matching's `ODESolver`,
   same network (samples/s and NFE);
4. one training step of each image backbone (unet, adm, dit at CIFAR size: 3 x 32 x 32) at batch 128 in bf16
   (`trainer.precision=bf16-mixed`), on uint8 images given as `data.target=images:FILE`;
5. latent scale: DiT-B/2 at batch 256 and DiT-XL/2 (SiT-XL/2's size) at batch 64 on latents of 4 x 32 x 32 (ImageNet
   256 through SD's VAE) in bf16: ms per training step and images/s;
6. the latent pipeline through the command line: an AutoencoderKL of SD's architecture (random weights: the same
   compute) saved with `save_pretrained`, `flowkit encode` of 512 RGB images at 256 px into shards (images/s),
   DiT-B/2 trained on the streamed shards (`data.target=shards:DIR`, 4 loader processes; ms per step) and
   `flowkit sample` decoding 64 samples on the GPU.

The parts run in the order 5, 6, 4, 2, 3, 1 and the JSON is written after each, so a call cut short keeps what it
measured.

flowkit runs in-process through the public API (`flowkit.train`): steps/s = (N2 - N1) / (t(N2) - t(N1)) from two
runs' fit times, so start-up and compilation cancel. `--smoke` runs every row on the CPU with tiny models and a
few steps, one run each (the test suite runs it: the rows' code, not their numbers).

    python bench/gpu.py [--device cuda|cpu] [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import flowkit
from common import report
from throughput import MODEL, device_name, peer_steps_per_s, sampling

PEERS = ("torchcfm", "flow_matching")
# the backbones at CIFAR-10 size (as in ADM / DDPM++ and DiT-S/2), and tiny ones for --smoke
BACKBONES = {
    "unet": {"name": "unet", "channels": 128, "mults": [1, 2, 2, 2], "time_dim": 256},
    "adm": {"name": "adm", "channels": 128, "mults": [1, 2, 2, 2], "blocks": 2, "attn_resolutions": [16], "heads": 4,
            "dropout": 0.1, "time_dim": 256},
    "dit": {"name": "dit", "hidden": 384, "depth": 12, "heads": 6, "patch": 2, "time_dim": 256},
}
SMOKE_BACKBONES = {
    "unet": {"name": "unet", "channels": 8, "mults": [1, 2], "time_dim": 16},
    "adm": {"name": "adm", "channels": 8, "mults": [1, 2], "blocks": 1, "attn_resolutions": [16], "heads": 2,
            "dropout": 0.1, "time_dim": 16},
    "dit": {"name": "dit", "hidden": 32, "depth": 2, "heads": 2, "patch": 4, "time_dim": 16},
}
# latent DiTs on 4 x 32 x 32 codes (DiT-B/2 and DiT-XL/2 of Peebles & Xie; SiT-XL/2 has XL/2's size)
# (network, batch): XL/2 at the batch one H200 holds (its papers train 256 on 8 GPUs: 32 each)
LATENT_DITS = {"DiT-B/2": ({"name": "dit", "hidden": 768, "depth": 12, "heads": 12, "patch": 2, "time_dim": 256}, 256),
               "DiT-XL/2": ({"name": "dit", "hidden": 1152, "depth": 28, "heads": 16, "patch": 2, "time_dim": 256}, 64)}
SMOKE_LATENT_DITS = {"DiT-B/2": ({"name": "dit", "hidden": 32, "depth": 2, "heads": 2, "patch": 2, "time_dim": 16}, 4)}
# Stable Diffusion's VAE (sd-vae-ft-mse's config: 83.7 M parameters, 8x downsampling to 4 channels), random weights
SD_VAE = {"down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
          "norm_num_groups": 32, "sample_size": 256, "scaling_factor": 0.18215}
SMOKE_VAE = {"down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
             "block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
             "sample_size": 32, "scaling_factor": 0.5}
QUIET = {"eval": {"solver": "euler:2", "compare": [], "n": 64, "repeats": 1}}


def fit_seconds(root: Path, recipe: str, steps: int, device: str, **overrides) -> float:
    """The fit time of one in-process `flowkit.train` run of ``steps`` steps."""
    trainer = {"max_steps": steps, "checkpoint_every": 10 * steps, "enable_progress_bar": False,
               "accelerator": device, **overrides.pop("trainer", {})}
    run = flowkit.train(recipe, run_root=overrides.pop("run_root", str(root)), trainer=trainer, **QUIET, **overrides)
    return run.summary["train_seconds"]


def steps_per_s(root: Path, recipe: str, steps: int, device: str, smoke: bool, **overrides) -> float:
    """Steps/s from two run lengths (start-up and compilation cancel); one run when ``smoke``."""
    if smoke:
        return steps / fit_seconds(root, recipe, steps, device, **overrides)
    n1 = max(10, steps // 5)
    return (steps - n1) / (fit_seconds(root, recipe, steps, device, **overrides)
                           - fit_seconds(root, recipe, n1, device, **overrides))


ERRORS: list[str] = []  # what failed on a real run (a row's failure must not cost the call's other rows)


def guarded(label: str, smoke: bool, work) -> float:
    """``work()``; on a real run a failure is recorded in ERRORS and the number is NaN (the smoke raises)."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 - any failure of one row, recorded with its message
        if smoke:
            raise
        ERRORS.append(f"{label}: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}")
        print(f"FAILED {ERRORS[-1]}", flush=True)
        return float("nan")


def timed(rows: dict, seconds: dict, key: str, work) -> None:
    """``rows[key] = work()``, its wall time in ``seconds[key]``."""
    start = time.perf_counter()
    rows[key] = work()
    seconds[key] = time.perf_counter() - start
    print(f"{key} ({seconds[key]:.0f} s): {rows[key]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models, a few steps: every row's code runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else args.device)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    smoke = args.smoke
    steps = 20 if smoke else 2000
    compile_mode = "reduce-overhead"
    backbones = SMOKE_BACKBONES if smoke else BACKBONES
    image_batch = 4 if smoke else 128
    latent_batch = 4 if smoke else 256
    started = time.perf_counter()
    rows: dict = {}
    seconds: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def mlp() -> dict:
            out = {}
            for batch in (256, 4096):
                data = {"batch_size": batch}
                row = {"flowkit": guarded(f"flowkit {batch}", smoke, lambda: steps_per_s(
                           root, "rectified", steps, accelerator, smoke, data=data)),
                       "flowkit_compiled": guarded(f"flowkit compiled {batch}", smoke, lambda: steps_per_s(
                           root, "rectified", steps, accelerator, smoke, data=data, trainer={"compile": compile_mode}))}
                row.update({peer: guarded(f"{peer} {batch}", smoke, lambda: peer_steps_per_s(
                    peer, "rectified", "8gaussians", batch, steps, device)) for peer in PEERS})
                out[str(batch)] = row
            return out

        def ot_cfm() -> dict:
            batch = 1024
            n = max(20, steps // 4)  # the peer loop times the steps after a warm-up of 10
            return {"batch": batch, "steps": n,
                    "flowkit": guarded("OT-CFM flowkit", smoke, lambda: steps_per_s(
                        root, "ot_cfm", n, accelerator, smoke, data={"batch_size": batch})),
                    "torchcfm_ot": guarded("OT-CFM torchcfm", smoke, lambda: peer_steps_per_s(
                        "torchcfm_ot", "rectified", "8gaussians", batch, n, device))}

        def dopri5() -> dict:
            n = 2000 if smoke else 100_000
            nan = float("nan")
            failed = {"flowkit": nan, "flowkit_nfe": -1, "flow_matching": nan, "flow_matching_nfe": -1}
            result = {}

            def run() -> float:
                result.update(sampling("rectified", "8gaussians", device, n))
                return 0.0

            guarded("dopri5", smoke, run)
            return {"points": n, **(result or failed)}

        def images() -> dict:
            pixels = np.random.default_rng(0).integers(0, 256, size=(1024, 32, 32, 3), dtype=np.uint8)
            np.savez(root / "images.npz", images=pixels)
            n = 10 if smoke else 200
            out = {}
            for name, spec in backbones.items():
                rate = guarded(f"backbone {name}", smoke, lambda: steps_per_s(
                    root, "digits_rectified", n, accelerator, smoke, model=spec,
                    data={"target": f"images:{root / 'images.npz'}", "batch_size": image_batch},
                    trainer={"precision": "bf16-mixed"}))
                out[name] = {"ms_per_step": 1000 / rate, "batch": image_batch, "model": spec}
            return out

        def latent() -> dict:
            codes = np.random.default_rng(0).standard_normal((64 if smoke else 4096, 4, 32, 32)).astype(np.float32)
            np.save(root / "latents.npy", codes)
            n, out = (10 if smoke else 100), {}
            for name, (spec, batch) in (SMOKE_LATENT_DITS if smoke else LATENT_DITS).items():
                rate = guarded(f"latent {name}", smoke, lambda: steps_per_s(
                    root, "digits_rectified", n, accelerator, smoke, model=spec,
                    data={"path": str(root / "latents.npy"), "batch_size": batch},
                    trainer={"precision": "bf16-mixed"}))
                out[name] = {"ms_per_step": 1000 / rate, "images_per_s": rate * batch, "batch": batch, "model": spec}
            return out

        def pipeline() -> dict:
            return guarded_row("latent pipeline", smoke, lambda: latent_pipeline(root, smoke, device, accelerator,
                                                                                    latent_batch))

        parts = (("latent", latent), ("pipeline", pipeline), ("backbones", images), ("ot_cfm", ot_cfm),
                 ("dopri5", dopri5), ("mlp", mlp))  # the MLP rows last: four torch.compile runs
        for key, work in parts:
            timed(rows, seconds, key, work)
            payload = {"device": device_name(device), "smoke": smoke, "torch": torch.__version__,
                       "python": platform.python_version(), "steps": steps, "compile": compile_mode, "rows": rows,
                       "seconds": time.perf_counter() - started, "seconds_per_part": seconds,
                       "errors": ERRORS, "mlp_model": MODEL["rectified"], "complete": key == parts[-1][0]}
            report(args.out, "gpu_smoke" if smoke else "gpu", payload, table(payload, image_batch))


def guarded_row(label: str, smoke: bool, work) -> dict:
    """``guarded`` for a part that returns a row: {"error": message} when it fails on a real run."""
    result: dict = {}

    def run() -> float:
        result.update(work())
        return 0.0

    guarded(label, smoke, run)
    return result or {"error": ERRORS[-1] if ERRORS else "failed"}


def latent_pipeline(root: Path, smoke: bool, device: torch.device, accelerator: str, batch: int) -> dict:
    """Part 6: `flowkit encode` through an AutoencoderKL saved here, DiT-B/2 on the streamed shards, `flowkit sample`."""
    from diffusers import AutoencoderKL

    from common import flowkit

    torch.manual_seed(0)
    vae = AutoencoderKL(**(SMOKE_VAE if smoke else SD_VAE))
    vae.save_pretrained(root / "vae")
    count, size = (16, 32) if smoke else (512, 256)
    photos = np.random.default_rng(1).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    np.savez(root / "photos.npz", images=photos)
    from flowkit.interface.commands import encode

    start = time.perf_counter()  # in-process, after the imports: the encoding itself (the VAE's load included)
    encode([f"data.target=images:{root / 'photos.npz'}", f"data.encoder=autoencoder-kl:{root / 'vae'}",
            f"out={root / 'codes'}", f"device={device.type}", "shard_mb=1" if smoke else "shard_mb=8"])
    encode_s = time.perf_counter() - start
    spec = (SMOKE_LATENT_DITS if smoke else LATENT_DITS)["DiT-B/2"][0]
    n = 10 if smoke else 60
    rate = steps_per_s(root, "digits_rectified", n, accelerator, smoke, model=spec,
                       data={"target": f"shards:{root / 'codes'}", "batch_size": batch, "workers": 2 if smoke else 4},
                       trainer={"precision": "bf16-mixed"}, run_root=str(root / "streamed"))
    run = sorted((root / "streamed").iterdir())[-1]
    start = time.perf_counter()
    flowkit("sample", f"ckpt={run}", "n=64", "solver=euler:4", f"out={root / 'decoded.png'}", f"device={device.type}")
    sample_s = time.perf_counter() - start
    return {"vae_parameters": sum(p.numel() for p in vae.parameters()), "images": count, "resolution": size,
            "encode_images_per_s": count / encode_s, "encode_seconds": encode_s,
            "streamed_ms_per_step": 1000 / rate, "batch": batch, "sample_decode_seconds": sample_s,
            "decoded_png": (root / "decoded.png").is_file()}


def table(payload: dict, image_batch: int) -> list[str]:
    """The markdown of whatever parts have run."""
    rows, smoke = payload["rows"], payload["smoke"]
    lines = [f"GPU rows on {payload['device']}{' (SMOKE: tiny models, a few steps; not a measurement)' if smoke else ''}"
             f": `bash bench/gpu.sh` ({payload['seconds']:.0f} s{'' if payload['complete'] else ', cut short'})", ""]
    if "latent" in rows:
        lines += ["| latent DiT (4x32x32, bf16) | batch | ms per training step | images/s |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['batch']} | {r['ms_per_step']:.1f} | {r['images_per_s']:.0f} |"
                  for name, r in rows["latent"].items()]
    p = rows.get("pipeline", {})
    if "encode_images_per_s" in p:
        lines += ["", f"Latent pipeline: `flowkit encode` of {p['images']} images at {p['resolution']} px through "
                      f"SD's VAE architecture: {p['encode_images_per_s']:.0f} images/s; DiT-B/2 on the streamed "
                      f"shards: {p['streamed_ms_per_step']:.1f} ms per step; `flowkit sample` of 64 decoded: "
                      f"{p['sample_decode_seconds']:.1f} s (process start included)."]
    if "backbones" in rows:
        lines += ["", f"| backbone (3x32x32, bf16, batch {image_batch}) | ms per training step |", "|---|---|"]
        lines += [f"| {name} | {r['ms_per_step']:.1f} |" for name, r in rows["backbones"].items()]
    if "mlp" in rows:
        lines += ["", "| 2-D MLP, batch | flowkit steps/s | flowkit, compile=reduce-overhead | TorchCFM | flow_matching | "
                      "flowkit / TorchCFM |", "|---|---|---|---|---|---|"]
        lines += [f"| {b} | {r['flowkit']:.0f} | {r['flowkit_compiled']:.0f} | {r['torchcfm']:.0f} | "
                  f"{r['flow_matching']:.0f} | {max(r['flowkit'], r['flowkit_compiled']) / r['torchcfm']:.2f} |"
                  for b, r in rows["mlp"].items()]
    if "ot_cfm" in rows:
        ot = rows["ot_cfm"]
        lines += ["", f"OT-CFM, batch {ot['batch']}: flowkit {ot['flowkit']:.0f} steps/s, TorchCFM "
                      f"{ot['torchcfm_ot']:.0f} ({ot['flowkit'] / ot['torchcfm_ot']:.2f}x)."]
    if "dopri5" in rows:
        d = rows["dopri5"]
        lines += [f"dopri5 on {d['points']:,} points: flowkit {d['flowkit']:,.0f} samples/s ({d['flowkit_nfe']} NFE), "
                  f"flow_matching {d['flow_matching']:,.0f} ({d['flow_matching_nfe']} NFE)."]
    lines += ["", "Failed (NaN above): " + "; ".join(ERRORS)] if ERRORS else []
    return lines

if __name__ == "__main__":
    main()
