"""Latent space: encoders (space-to-depth exact; diffusers' AutoencoderKL from a folder a test writes with
save_pretrained), `flowkit encode` + `flowkit train data.encoder=...` + `flowkit sample` through the CLI, codes
scaled as the VAE's config says, samples decoded and scored by FD, and a run that samples after its cache is gone."""

import json
import shutil

import numpy as np
import pytest
import torch

from flowkit.data.digits import Digits
from flowkit.data.encoders import build_encoder
from flowkit.data.pair import build_pair
from flowkit.data.shards import ShardStore, read_index
from flowkit.errors import ConfigError
from flowkit.models import MODELS
from tests.helpers import run_cli


def test_space_to_depth_is_exact_and_checks_its_shape():
    encoder = build_encoder("space-to-depth:4")
    x = torch.randn(3, 3, 16, 8)
    z, std = encoder.encode(x)
    assert std is None and z.shape == (3, 48, 4, 2) == (3, *encoder.latent_shape((3, 16, 8)))
    assert torch.equal(encoder.decode(z), x)
    with pytest.raises(ConfigError, match="H and W divisible by 4"):
        encoder.latent_shape((3, 16, 6))
    with pytest.raises(ConfigError, match="'four' is not a int"):
        build_encoder("space-to-depth:four")


def test_in_memory_latents_encode_each_image_and_its_mirror_once():
    """data.encoder on data held in memory: codes of every image and of its mirror, drawn one view at a time."""
    _, target = build_pair("gaussian", "digits", None, resolution=16, flip=True, encoder="space-to-depth")
    assert target.shape == (4, 8, 8) and target.codes.x.shape == (1500, 2, 4, 8, 8) and target.num_classes == 10
    images = Digits(resolution=16).data
    assert torch.equal(target.decode(target.codes.x[:, 0]), images)
    assert torch.equal(target.decode(target.codes.x[:, 1]), images.flip(-1))
    z = target.sample(200, torch.Generator().manual_seed(0))
    flipped = [bool((target.decode(z[i:i + 1]) == images.flip(-1)).flatten(1).all(1).any()) for i in range(200)]
    assert 0.35 < np.mean(flipped) < 0.65
    assert target.metric == "FD" and target.reference(5, torch.Generator()).shape == (297, 1, 16, 16)  # pixel space


def test_adm_takes_latent_channels_and_refuses_non_square_images():
    net = MODELS.build({"name": "adm", "channels": 8, "mults": [1, 2], "blocks": 1, "attn_resolutions": [8],
                        "heads": 2}, data_shape=(4, 16, 16))
    assert net(torch.randn(2, 4, 16, 16), torch.rand(2)).shape == (2, 4, 16, 16)
    with pytest.raises(ConfigError, match="adm takes square images.*16x32.*model=unet or model=dit"):
        MODELS.build({"name": "adm", "channels": 8, "mults": [1, 2], "heads": 2}, data_shape=(4, 16, 32))
    dit = MODELS.build({"name": "dit", "hidden": 32, "depth": 1, "heads": 2, "patch": 2}, data_shape=(4, 16, 32))
    assert dit(torch.randn(2, 4, 16, 32), torch.rand(2)).shape == (2, 4, 16, 32)


@pytest.fixture(scope="module")
def vae_and_digits(tmp_path_factory):
    """A tiny randomly initialised AutoencoderKL for grey 16x16 images (4 latent channels, downsampling 2, scaling
    0.5, shift 0.1) saved with save_pretrained, and the digits at 16x16 as uint8 images."""
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("latent")
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=0.5, shift_factor=0.1)
    vae.save_pretrained(root / "vae")
    digits = Digits(resolution=16).data[:300]
    pixels = digits.add(1).mul(127.5).round().to(torch.uint8).numpy().transpose(0, 2, 3, 1)
    np.savez(root / "digits.npz", images=pixels, labels=Digits().labels[:300].numpy())
    return root, vae.eval()


def test_encode_train_sample_through_the_cli_with_an_autoencoder_kl(vae_and_digits, tmp_path):
    root, vae = vae_and_digits
    data = [f"data.target=images:{root / 'digits.npz'}", "data.features=digits"]
    encoder = f"data.encoder=autoencoder-kl:{root / 'vae'}"
    proc = run_cli(["encode", *data, encoder, f"out={tmp_path / 'codes'}", "shard_mb=0.01", "reference=300"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    index = read_index(tmp_path / "codes")
    assert index["shape"] == [4, 8, 8] and index["data_shape"] == [1, 16, 16] and index["std"] and index["count"] == 300
    assert index["encoder"] == f"autoencoder-kl:{root / 'vae'}" and index["features"] == "digits"
    # the codes are the posterior's mean and std, scaled as the VAE's config says: z = 0.5 (mean - 0.1)
    store = ShardStore(tmp_path / "codes", index)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:20]
    images = torch.from_numpy(np.load(root / "digits.npz")["images"].transpose(0, 3, 1, 2)).float() / 127.5 - 1
    with torch.no_grad():
        posterior = vae.encode(images[order]).latent_dist
    mean, std = store.fetch(torch.arange(20))
    assert torch.allclose(mean[:, 0], (posterior.mean - 0.1) * 0.5, atol=1e-5)
    assert torch.allclose(std[:, 0], posterior.std * 0.5, atol=1e-5)

    run = ["train", "recipe=digits_rectified", f"data.target=shards:{tmp_path / 'codes'}", encoder,
           "model.channels=8", "model.mults=[1,2]", "trainer.max_steps=20", "eval.n=64", "eval.solver=euler:4",
           "trainer.enable_progress_bar=false", f"run_root={tmp_path / 'runs'}"]
    proc = run_cli(run, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metric"] == "FD" and np.isfinite(summary["rows"][0]["value"]) and (run_dir / "samples.png").is_file()

    shutil.rmtree(tmp_path / "codes")  # the run is self-contained: it samples and decodes without its cache
    for out in ("x.png", "x.npy"):
        proc = run_cli(["sample", f"ckpt={run_dir}", "n=16", "solver=euler:4", f"out={tmp_path / out}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.png").stat().st_size > 0 and np.load(tmp_path / "x.npy").shape == (16, 1, 16, 16)
    proc = run_cli(["eval", f"ckpt={run_dir}", "n=16", "solver=euler:2", "repeats=1", "nll_n=4"], cwd=tmp_path)
    assert proc.returncode == 2 and "no such folder (this needs the run's data" in proc.stderr

    proc = run_cli([*run[:2], data[0], f"data.encoder=autoencoder-kl:{tmp_path / 'nowhere'}"], cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no such folder" in lines[0] and "save_pretrained" in lines[0]
