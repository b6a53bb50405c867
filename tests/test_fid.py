"""FD / FID: the distance against scipy, a small fixed feature network against an independent computation, the FID
Inception network on weights the tests write (its resize in closed form, its loading errors, its cache lookup, and
bit-for-bit against torch-fidelity's network when that is installed), and data.features through datasets and a run."""

import gc
import importlib.util
import sys
import types
import weakref

import numpy as np
import pytest
import torch
from torch import nn

import flowkit
from flowkit.data.pair import build_pair
from flowkit.errors import ConfigError
from flowkit.metrics.features import FEATURES, fd, feature_network, register_features
from flowkit.metrics.inception import WEIGHT_FILES, InceptionV3, load_inception, tf1_resize
from flowkit.metrics.distances import frechet_distance


class Tiny(nn.Module):
    """A small fixed feature network: seeded conv, ReLU, spatial mean (8 features)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x.expand(-1, 3, -1, -1))).mean((2, 3))


if "test_tiny" not in FEATURES:
    register_features("test_tiny")(lambda: Tiny().eval().requires_grad_(False))


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """FD the textbook way, independently of flowkit: numpy moments and scipy's matrix square root."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def images(seed: int, n: int = 64, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) * 2 - 1 + shift).clamp(-1, 1)


def test_frechet_distance_matches_scipy_on_correlated_features():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64) + 0.5
    assert frechet_distance(a, b) == pytest.approx(scipy_fd(a.numpy(), b.numpy()), rel=1e-9)


def test_fd_in_a_fixed_network_matches_an_independent_computation():
    x, y = images(0), images(1, shift=0.3)
    net = Tiny().eval()
    with torch.no_grad():
        fx, fy = net(x).double().numpy(), net(y).double().numpy()
    assert fd(x, y, "test_tiny") == pytest.approx(scipy_fd(fx, fy), rel=1e-8)
    assert fd(x, x, "test_tiny") == pytest.approx(0.0, abs=1e-9)
    assert fd(x, y, "test_tiny") > fd(x, images(2), "test_tiny")  # the shifted set is the farther one


class Counting(Tiny):
    """Tiny, counting the images it is shown."""

    seen = 0

    def forward(self, x):
        Counting.seen += x.shape[0]
        return super().forward(x)


if "test_counting" not in FEATURES:
    register_features("test_counting")(lambda: Counting().eval().requires_grad_(False))


def test_the_reference_features_are_computed_once_while_the_reference_is_unchanged():
    """compare scores every sampler against one reference: its features are taken once, not once per row."""
    x, y, ref = images(0), images(1), images(2)
    Counting.seen = 0
    first = fd(x, ref, "test_counting")
    assert fd(y, ref, "test_counting") == pytest.approx(fd(y, ref.clone(), "test_tiny"))
    assert Counting.seen == 3 * 64  # x, y and the reference once
    assert fd(x, ref.clone(), "test_counting") == pytest.approx(first) and Counting.seen == 5 * 64  # another tensor
    ref.mul_(0.5)  # changed in place: taken again, and the distance follows
    assert fd(x, ref, "test_counting") != pytest.approx(first) and Counting.seen == 7 * 64
    alive = weakref.ref(ref)
    del ref
    gc.collect()
    assert alive() is None  # the memo does not keep a reference alive
    with torch.inference_mode():  # Lightning's evaluation loops: no version counter, so no reuse, and no error
        frozen = images(2)
        assert fd(x, frozen, "test_counting") == fd(x, frozen, "test_counting") and Counting.seen == 11 * 64


def test_tf1_resize_in_closed_form():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    assert torch.equal(tf1_resize(x[..., :4], 4), x[..., :4])  # same size: the identity
    up = tf1_resize(x[..., :4], 8)  # output i reads input i / 2: even outputs copy, odd ones average neighbours
    assert torch.allclose(up[:, :, ::2, ::2], x[..., :4])
    assert torch.allclose(up[:, :, 1:-1:2, ::2], (x[:, :, :-1, :4] + x[:, :, 1:, :4]) / 2)
    assert torch.allclose(up[:, :, -1], up[:, :, -2])  # no half-pixel centres: the last row clamps
    down = tf1_resize(torch.randn(1, 1, 8, 8).repeat(1, 1, 1, 1), 4)  # input 2i exactly: every other pixel
    assert down.shape == (1, 1, 4, 4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random FID-Inception weights with non-trivial BatchNorm statistics, saved as a user's file would be."""
    torch.manual_seed(0)
    net = InceptionV3()
    for m in net.modules():  # variance-preserving, so that images still differ after 90-odd layers
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("inception") / WEIGHT_FILES[0]
    torch.save(net.state_dict(), path)
    return path


def test_inception_gives_2048_features_grey_as_rgb_and_sees_only_the_256_levels(weights):
    net = feature_network(f"inception:{weights}")
    grey = torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    f = net(grey)
    assert f.shape == (3, 2048) and torch.isfinite(f).all() and (f[0] - f[1]).abs().max() > 1e-3 * f.abs().max()
    assert torch.equal(f, net(grey.expand(-1, 3, -1, -1)))
    assert torch.equal(f, net(grey + 0.2 / 127.5))  # within one level: the same uint8 image
    assert net.fc.out_features == 1008


def test_inception_loading_errors_name_the_file_and_what_is_wrong(tmp_path, weights, monkeypatch):
    with pytest.raises(ConfigError, match="no such file"):
        load_inception(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ConfigError, match=r"other\.pth: not the FID InceptionV3's weights \(472 missing, e.g. Conv2d_1a_3x3.bn.bias.*1 unexpected, e.g. conv.weight\)"):
        load_inception(other)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match=r"no FID Inception weights on disk .*home/hub/checkpoints.*inception:/path"):
        load_inception()
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / WEIGHT_FILES[1]).symlink_to(weights)  # pytorch-fid's name in torch's cache is found too
    assert isinstance(load_inception(), InceptionV3)


def torch_fidelity_inception():
    """torch-fidelity's FeatureExtractorInceptionV3 module, imported without its package (whose __init__ needs
    torchvision), or None when torch-fidelity is not installed."""
    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None:
        return None
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    saved = {k: v for k, v in sys.modules.items() if k.startswith("torch_fidelity")}
    sys.modules["torch_fidelity"] = package
    try:
        for name in ("helpers", "feature_extractor_base", "interpolate_compat_tensorflow", "feature_extractor_inceptionv3"):
            sub = importlib.util.spec_from_file_location(f"torch_fidelity.{name}", f"{package.__path__[0]}/{name}.py")
            module = importlib.util.module_from_spec(sub)
            sys.modules[sub.name] = module
            sub.loader.exec_module(module)
        return module
    except ImportError:
        return None
    finally:
        for key in [k for k in sys.modules if k.startswith("torch_fidelity")]:
            del sys.modules[key]
        sys.modules.update(saved)


def test_inception_features_equal_torch_fidelitys_bit_for_bit(weights):
    """torchmetrics' FID runs torch-fidelity's network: same weights, same uint8 images -> the same features."""
    module = torch_fidelity_inception()
    if module is None:
        pytest.skip("torch-fidelity is not installed (pip install --no-deps torch-fidelity)")
    theirs = module.FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(weights))
    ours = load_inception(weights)
    levels = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    (expected,) = theirs(levels)
    assert torch.equal(ours(levels.float() / 127.5 - 1), expected)


def test_data_features_scores_image_data_and_digits_and_is_refused_elsewhere(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    _, target = build_pair("gaussian", f"images:{tmp_path / 'x.npy'}", None, features="test_tiny")
    x, ref = images(0, n=40), target.reference(40, torch.Generator().manual_seed(0))
    assert target.metric == "FD" and target.quality(x, ref) == pytest.approx(fd(x, ref, "test_tiny"))
    _, plain = build_pair("gaussian", f"images:{tmp_path / 'x.npy'}", None)
    assert plain.metric == "W2"
    _, digits32 = build_pair("gaussian", "digits", None, resolution=32)
    test8 = flowkit.data.digits.digit_images("test")[0]
    assert digits32.shape == (1, 32, 32) and digits32.metric == "FD"
    # upscaled bilinearly, scored after 4x4 block means: close to the 8x8 digits' own FD of zero
    assert digits32.quality(digits32.reference(0, None), test8) < 0.05 * build_pair(
        "gaussian", "digits", None)[1].quality(torch.zeros_like(test8), test8)
    with pytest.raises(ConfigError, match="data.features=test_tiny: dataset '8gaussians' takes no features"):
        build_pair("gaussian", "8gaussians", None, features="test_tiny")
    with pytest.raises(ConfigError, match="feature network 'nope'.*digits.*inception"):
        build_pair("gaussian", "digits", None, features="nope")
    with pytest.raises(ConfigError, match="data.resolution=12: digits are 8x8; expected a multiple of 8"):
        build_pair("gaussian", "digits", None, resolution=12)


def test_a_run_reports_fd_in_the_named_network(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    run = flowkit.train("digits_rectified", data={"target": f"images:{tmp_path / 'x.npy'}", "features": "test_tiny"},
                        model={"channels": 8}, trainer={"max_steps": 2, "enable_progress_bar": False},
                        eval={"solver": "euler:2", "compare": [], "n": 40, "repeats": 1}, run_root=str(tmp_path))
    assert run.summary["metric"] == "FD" and run.summary["rows"][0]["value"] > 0
