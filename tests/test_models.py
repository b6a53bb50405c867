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


def test_methods_declare_open_inputs_each_embedded_by_its_kind():
    """A method's network takes any named input (flowkit.models.Input); the built-in names keep the state-dict
    names every saved run has (interval, classes, guidance)."""
    from flowkit.errors import ConfigError
    from flowkit.models import MODELS, Input, compose

    backbone = lambda: MODELS.build({"name": "mlp", "width": 16}, data_shape=(2,))  # noqa: E731
    legacy = compose(backbone(), ("t_end", "guidance"), classes=3)
    assert {k.split(".")[0] for k in legacy.state_dict()} == {"backbone", "interval", "classes", "guidance"}
    net = compose(backbone(), {"d": Input("time"), "sigma": Input("scalar", default=0.5, zero_init=True),
                               "style": Input("class", size=4), "feat": Input("vector", size=3)})
    assert {k.split(".")[0] for k in net.state_dict()} == {"backbone", "input_d", "input_sigma", "input_style",
                                                            "input_feat"}
    x, t = torch.randn(5, 2), torch.rand(5)
    for p in net.parameters():  # the backbone's output layer starts at 0: give every weight a value
        torch.nn.init.normal_(p, std=0.3)
    out = net(x, t, d=torch.full((5,), 0.25), style=torch.arange(5) % 4, feat=torch.randn(5, 3))
    assert out.shape == (5, 2)
    assert not torch.equal(out, net(x, t, d=torch.full((5,), 0.5), style=torch.arange(5) % 4, feat=torch.zeros(5, 3)))
    torch.testing.assert_close(net(x, t, d=t * 0 + 0.25), net(x, t, d=t * 0 + 0.25, sigma=t * 0 + 0.5, feat=torch.zeros(5, 3)))
    with pytest.raises(TypeError, match="needs the input 'd'"):
        net(x, t)
    with pytest.raises(TypeError, match="takes no input 'dd'; its method declares: d, sigma, style, feat"):
        net(x, t, d=t, dd=t)
    with pytest.raises(ConfigError, match="'step' is not a built-in input"):
        compose(backbone(), ("step",))
    with pytest.raises(ValueError, match="kind='curve' is not one of"):
        Input("curve")
