"""A method's own optimisation of a training step: the trainer's implementation of ``flowkit.methods.Steps``."""

from __future__ import annotations

from typing import Any, Callable

import torch


class OptimiserSteps:
    """``flowkit.methods.Steps`` on the module's optimisers (one per network, in ``module.names`` order), through
    Lightning's manual optimisation: the model's step through its optimiser (counted), the others through the
    strategy (not counted)."""

    def __init__(self, module: Any) -> None:  # a flowkit.training.module.FlowModule
        self.module = module
        self.model = module.model
        self.networks = dict(module.networks.items())
        self.loss = module.loss_of  # the method's loss, compiled when trainer.compile asks

    def step(self, name: str, compute: Callable[[], dict[str, torch.Tensor] | None]) -> torch.Tensor | None:
        m = self.module
        if name not in m.names:
            raise ValueError(f"no network '{name}' to step; valid: {', '.join(m.names)}")
        index = m.names.index(name)
        optimizers, schedulers = m.optimizers(), m.lr_schedulers()
        optimizer, scheduler = optimizers[index], schedulers[index]
        optimizer.zero_grad(set_to_none=True)
        m.toggle_optimizer(optimizer)  # the other networks' parameters stop asking for gradients
        loss = None
        try:
            terms = compute()
            if terms is not None:
                def closure() -> torch.Tensor | None:
                    nonlocal loss
                    loss = m.reduced(terms, index)
                    if loss is not None:
                        m.manual_backward(loss)
                        clip = m.config["trainer"]["gradient_clip_val"]
                        if clip is not None:
                            m.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
                    return loss

                if index == 0:
                    optimizer.step(closure=closure)
                    m.method.after_step(m.model, m.global_step)
                else:  # through the strategy: not counted as a training step
                    m.trainer.strategy.optimizer_step(optimizer.optimizer, closure, model=m)
                scheduler.step()
        finally:
            m.untoggle_optimizer(optimizer)
        return loss
