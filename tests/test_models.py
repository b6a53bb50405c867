"""Models: shapes for 2-D and image data, time dependence, refusal of shapes they cannot take."""

import pytest
import torch

from flowkit.errors import ConfigError
from flowkit.models import MODELS


@pytest.mark.parametrize("name,shape", [("mlp", (2,)), ("mlp", (1, 8, 8)), ("unet", (1, 8, 8)), ("unet", (1, 28, 28)),
                                        ("unet", (3, 8, 8))])
def test_output_has_input_shape_and_depends_on_time(name, shape):
    model = MODELS.build({"name": name, **({"channels": 16} if name == "unet" else {})}, data_shape=shape)
    if name == "unet":  # its output layer starts at zero (a common init); perturb it to see t through it
        torch.nn.init.normal_(model.out[-1].weight)
    x = torch.randn(3, *shape)
    out = model(x, torch.full((3,), 0.2))
    assert out.shape == x.shape
    assert not torch.allclose(out, model(x, torch.full((3,), 0.8)))


def test_unet_refuses_shapes_it_cannot_downsample():
    with pytest.raises(ConfigError, match="does not divide"):
        MODELS.build({"name": "unet"}, data_shape=(1, 6, 6))
    with pytest.raises(ConfigError, match="needs image data"):
        MODELS.build({"name": "unet"}, data_shape=(2,))


def test_jvp_goes_through_the_unet():
    """MeanFlow and continuous consistency need forward-mode AD through the shipped models."""
    model = MODELS.build({"name": "unet", "channels": 16}, data_shape=(1, 8, 8))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    out, tangent = torch.func.jvp(model, (x, t), (torch.zeros_like(x), torch.ones_like(t)))
    eps = 1e-3
    fd = (model(x, t + eps) - model(x, t - eps)) / (2 * eps)
    torch.testing.assert_close(tangent, fd, rtol=5e-2, atol=5e-3)
