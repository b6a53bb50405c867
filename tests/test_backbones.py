"""The image backbones with attention, the ADM-style UNet (``adm``) and the DiT (``dit``): shapes with every
composed input, jvp against finite differences, bf16 autocast, torch.compile, and every method training on them."""

import pytest
import torch

from flowkit.config.schema import apply_overrides, load_recipe, recipe_names
from flowkit.models import MODELS, compose
from flowkit.models.attention import jvp_safe_attention

SHAPE = (1, 8, 8)
SMALL = {
    "adm": {"name": "adm", "channels": 16, "mults": [1, 2], "blocks": 1, "attn_resolutions": [4], "heads": 2,
            "dropout": 0.0},
    "dit": {"name": "dit", "hidden": 32, "depth": 2, "heads": 2, "patch": 2},
}
OVERRIDES = {
    "adm": ["model=adm", "model.channels=8", "model.mults=[1,2]", "model.blocks=1", "model.attn_resolutions=[4]",
            "model.heads=2"],
    "dit": ["model=dit", "model.hidden=32", "model.depth=1", "model.heads=2", "model.patch=2"],
}


def randomised(net: torch.nn.Module) -> torch.nn.Module:
    """Every weight drawn at random: the zero-initialised output layers would make every check trivial."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.2)
    return net


@pytest.mark.parametrize("name", SMALL)
def test_output_shape_with_labels_an_end_time_and_a_guidance_weight(name):
    net = compose(MODELS.build(SMALL[name], data_shape=SHAPE), ("t_end", "guidance"), classes=10)
    x, t = torch.randn(4, *SHAPE), torch.rand(4)
    out = net(x, t, t_end=torch.ones(4), cond=torch.arange(4), w=torch.full((4,), 2.0))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", SMALL)
def test_the_network_starts_at_zero(name):
    net = MODELS.build(SMALL[name], data_shape=SHAPE)
    assert net(torch.randn(2, *SHAPE), torch.rand(2)).abs().max() == 0


@pytest.mark.parametrize("name", SMALL)
def test_jvp_through_attention_matches_finite_differences(name):
    # time_scale 10 instead of 1000: the time features' derivatives stay small enough for central differences
    net = randomised(MODELS.build({**SMALL[name], "time_scale": 10.0}, data_shape=SHAPE).double().eval())
    g = torch.Generator().manual_seed(1)
    x, dx = (torch.randn(3, *SHAPE, generator=g, dtype=torch.float64) for _ in range(2))
    t, dt = torch.rand(3, generator=g, dtype=torch.float64) * 0.8 + 0.1, torch.ones(3, dtype=torch.float64)
    with jvp_safe_attention():
        _, tangent = torch.func.jvp(net, (x, t), (dx, dt))
    eps = 1e-6
    finite = (net(x + eps * dx, t + eps * dt) - net(x - eps * dx, t - eps * dt)) / (2 * eps)
    torch.testing.assert_close(tangent, finite, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [SHAPE, (4, 8, 8)], ids=["pixels", "latent"])
@pytest.mark.parametrize("name", SMALL)
def test_bf16_autocast_and_torch_compile_agree_with_float32(name, shape):
    """On grey pixels and on 4-channel latent codes alike."""
    net = randomised(MODELS.build(SMALL[name], data_shape=shape).eval())
    x, t = torch.randn(4, *shape), torch.rand(4)
    with torch.no_grad():
        eager = net(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x, t)
        compiled = torch.compile(net)(x, t)
    assert half.dtype == torch.bfloat16
    assert (half.float() - eager).abs().max() < 0.05 * eager.abs().max()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", SMALL)
def test_bad_sizes_are_refused_naming_the_option(name):
    from flowkit.errors import ConfigError

    with pytest.raises(ConfigError, match="patch=3|heads=3"):
        MODELS.build({**SMALL[name], **({"patch": 3} if name == "dit" else {"heads": 3})}, data_shape=SHAPE)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A tiny digits run per backbone, to stand as the teacher (and the student's starting point)."""
    from flowkit.training.loop import train

    root = tmp_path_factory.mktemp("backbone-teachers")
    quiet = ["trainer.max_steps=2", "trainer.enable_progress_bar=false", "eval.n=20", "eval.repeats=1",
             "eval.compare=[]", "eval.solver=euler:2", f"run_root={root}"]
    return {name: train(apply_overrides(load_recipe("digits_rectified"), [*quiet, *OVERRIDES[name]])).run_dir
            for name in OVERRIDES}


@pytest.mark.parametrize("backbone", OVERRIDES)
@pytest.mark.parametrize("recipe", [r for r in recipe_names() if r.startswith("digits_") and "classifier" not in r])
def test_every_method_trains_a_few_steps_on_each_backbone(recipe, backbone, teachers, tmp_path):
    from flowkit.training.loop import train

    cfg = load_recipe(recipe)
    tokens = [*OVERRIDES[backbone], "trainer.max_steps=2", "trainer.enable_progress_bar=false", "eval.n=20",
              "eval.repeats=1", f"run_root={tmp_path}"]
    if "teacher" in cfg.method:
        tokens.append(f"method.teacher={teachers[backbone]}")
    if cfg.model.get("init_from"):
        tokens.append(f"model.init_from={teachers[backbone]}")
    if cfg.method.name == "progressive":
        tokens.append("method.student_steps=2")
    if "critic_width" in cfg.method:
        tokens.append("method.critic_width=8")
    result = train(apply_overrides(cfg, tokens))
    assert result.steps == 2 and all(row["nfe"] >= 1 for row in result.summary["rows"])
