"""CFM: the loss against its formula, and its minimiser against the closed-form marginal velocity."""

import re

import pytest
import torch

from flowkit.methods import METHODS, per_sample_mse, register_method
from flowkit.paths import PATHS
from flowkit.timesteps import TIME_SAMPLERS


class FixedTimes:
    def __init__(self, t):
        self.t = t

    def __call__(self, n, device="cpu"):
        return self.t


@pytest.mark.parametrize("path_name", ["rectified", "cosine", "vp"])
def test_cfm_loss_is_per_sample_mse_to_the_path_target(path_name):
    path = PATHS.build({"name": path_name})
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    method = METHODS.build({"name": "cfm"}, path=path, time_sampler=FixedTimes(t))
    x0, x1 = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    model = lambda x, s: torch.sin(x) * s[:, None]  # noqa: E731
    loss = method.loss(model, {"x0": x0, "x1": x1})["loss"]
    a, s, da, ds = path.alpha(t)[:, None], path.sigma(t)[:, None], path.d_alpha(t)[:, None], path.d_sigma(t)[:, None]
    x_t = a * x1 + s * x0
    expected = ((torch.sin(x_t) * t[:, None] - (da * x1 + ds * x0)) ** 2).mean(1)
    assert loss.shape == (6,)
    torch.testing.assert_close(loss, expected)


def test_cfm_gradient_vanishes_at_the_marginal_velocity():
    """For Gaussian data the marginal velocity is known; CFM's expected gradient there is zero, i.e. the
    conditional loss has the marginal field as its minimiser (Lipman et al. 2023, Thm. 2)."""
    path = PATHS.build({"name": "rectified"})
    mu, c = torch.tensor([2.0, -1.0], dtype=torch.float64), 0.5

    class Marginal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

        def forward(self, x, t):
            a, s = t[:, None], 1 - t[:, None]
            var = a**2 * c**2 + s**2
            centred = x - a * mu
            return (mu + a * c**2 / var * centred) - s / var * centred + self.shift

    model = Marginal()
    method = METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))
    n = 400_000
    batch = {"x0": torch.randn(n, 2, dtype=torch.float64), "x1": mu + c * torch.randn(n, 2, dtype=torch.float64)}
    method.loss(model, batch)["loss"].mean().backward()
    assert model.shift.grad.abs().max() < 0.02  # Monte Carlo noise; a shift of 0.1 gives a gradient of ~0.1
    assert per_sample_mse(torch.ones(3, 2), torch.zeros(3, 2)).tolist() == [1.0, 1.0, 1.0]


# -- the method contract: checked when a method is registered --------------------------------------------------

def contract_error(cls):
    from flowkit.errors import ContractError
    from flowkit.methods import check_method

    with pytest.raises(ContractError) as info:
        check_method("mine", cls)
    return str(info.value)


def test_an_unknown_or_misspelt_capability_is_refused_naming_the_valid_ones():
    from flowkit.methods import Method

    class Misspelt(Method):
        sampler = ("renoise",)  # the capability is "samplers"

    message = contract_error(Misspelt)
    assert message == ("method 'mine' declares unknown capability 'sampler'; valid: inputs, needs_labels, ode, "
                       "samplers, classifier (did you mean 'samplers'?)")

    class Made(Method):
        model_options = {"times": 2}  # an old-style probe attribute

    assert "unknown capability 'model_options'" in contract_error(Made)

    from flowkit.methods import CFM, check_method

    class Constant(CFM):
        EPS = 1e-4  # a constant of the method's own, not a declaration

    check_method("mine", Constant)


def test_a_misspelt_hook_a_bad_value_and_a_non_method_are_refused():
    from flowkit.methods import Method

    class Hook(Method):
        def after_stp(self, model, step):
            pass

    assert "defines 'after_stp', which is not a hook (did you mean 'after_step'?)" in contract_error(Hook)

    class BadInputs(Method):
        inputs = ("labels",)  # labels come from the run (cond.labels), not from the method

    assert "inputs: 'labels' is not a built-in input (t_end, guidance); declare it as {'labels': Input(kind)}" in contract_error(BadInputs)

    class Unsampleable(Method):
        ode = False

    assert "ode=False and no samplers" in contract_error(Unsampleable)

    class Lonely(Method):
        def networks(self):
            return {"other": (torch.nn.Linear(1, 1), {})}

    assert "defines no training_step" in contract_error(Lonely)

    class Greedy(Method):
        def networks(self, model, other):
            return {}

        def training_step(self, steps, batch):
            pass

    assert "networks takes model, other; expected networks(self) or networks(self, model)" in contract_error(Greedy)
    assert "does not derive from flowkit.methods.Method" in contract_error(type("Plain", (), {}))


def test_networks_may_take_the_model_to_start_a_network_as_its_copy():
    import copy

    from flowkit.methods import Method, method_networks

    class Plain(Method):
        def networks(self):
            return {"a": (torch.nn.Linear(1, 1), {})}

    class Copying(Method):
        def networks(self, model):
            return {"copy": (copy.deepcopy(model), {})}

    model = torch.nn.Linear(2, 2)
    assert list(method_networks(Plain(), model)) == ["a"]
    copied = method_networks(Copying(), model)["copy"][0]
    assert copied is not model and torch.equal(copied.weight, model.weight)


def test_registering_through_the_decorator_runs_the_check():
    from flowkit.errors import ContractError
    from flowkit.methods import Method

    with pytest.raises(ContractError, match="unknown capability 'odee'"):
        @register_method("test_contract_bad")
        class Bad(Method):
            odee = False
    assert "test_contract_bad" not in METHODS


def test_helpers_and_properties_that_declare_capabilities_are_fine():
    from flowkit.methods import Method, check_capabilities, check_method

    class Fine(Method):
        _private = 3

        @property
        def inputs(self):
            return ("guidance",) if self._private else ()

        def average(self, x):
            return x

    check_method("fine", Fine)
    check_capabilities("fine", Fine())


@pytest.mark.parametrize("returned,message", [
    (lambda mse: mse.mean(), "its loss returned a Tensor; expected a dict {'loss': tensor of shape (64,)"),
    (lambda mse: {"loss": mse.mean()}, "its loss term 'loss' has shape (); expected"),
    (lambda mse: {"loss": torch.stack([mse, mse], 1)}, "its loss term 'loss' has shape (64, 2)"),
    (lambda mse: {"loss": mse, "extra": mse[:3]}, "its loss term 'extra' has shape (3,)"),
    (lambda mse: {"total": mse}, "its loss returned a dict without 'loss' (keys ['total'])"),
])
def test_a_loss_that_breaks_the_contract_stops_at_the_first_step_naming_it(tmp_path, returned, message):
    import flowkit
    from flowkit.errors import ContractError
    from flowkit.methods import CFM

    name = f"test_bad_loss_{abs(hash(message)) % 10**8}"

    @register_method(name)
    class BadLoss(CFM):
        def loss(self, model, batch):
            return returned(super().loss(model, batch)["loss"])

    with pytest.raises(ContractError, match=re.escape(f"method '{name}': {message}")):
        flowkit.train("rectified", method=name, run_root=str(tmp_path), trainer={"max_steps": 2},
                      data={"batch_size": 64}, model={"name": "mlp", "width": 16},
                      eval={"n": 20, "repeats": 1, "compare": []})
