"""Progressive distillation (Salimans & Ho 2022, Alg. 2) on any affine path.

A student with N steps learns to match two DDIM steps of its teacher (2N steps) with one:

    i ~ U{0..N-1},  t = i/N,  t' = t + 1/(2N),  t'' = t + 1/N,  x_t = alpha(t) x1 + sigma(t) x0
    x_t' = DDIM_teacher(x_t, t -> t'),  x_t'' = DDIM_teacher(x_t', t' -> t'')
    (x0~, x1~) = the endpoints one DDIM step from (x_t, t) must predict to land on x_t''
    L = || v_student(x_t, t) - v~ ||^2,  v~ = alpha'(t) x1~ + sigma'(t) x0~          (weighting=velocity)
    L = max(SNR(t), 1) || x1_student - x1~ ||^2,  SNR = alpha^2 / sigma^2          (weighting=truncated_snr)

Then the student becomes the teacher and N halves (``next_round``), each stage in its own run
directory. A stage's student is a velocity field trained for flowkit's ``ddim:N`` sampler: N DDIM steps
of the path (identical to Euler on the rectified path).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of, guided
from flowkit.errors import ConfigError
from flowkit.methods import Method, per_sample_mse
from flowkit.paths import AffinePath
from flowkit.samplers.ddim import ddim_step
from flowkit.teacher import Teacher, follow_teacher
from flowkit.plugins.progressive.ddim import endpoints_through

WEIGHTINGS = ("velocity", "truncated_snr")


class ProgressiveDistillation(Method):
    """Salimans & Ho 2022: a student halves its teacher's DDIM steps.

    ``guided=true`` is guided distillation (Meng et al. 2023, "On Distillation of Guided Diffusion
    Models"): the student takes the guidance weight w as an input (declared: ``inputs``) and learns
    the classifier-free-guided teacher, w ~ U[guidance_min, guidance_max] per sample. Meng et al. first
    distil the guided teacher at its own step count, then halve; here the first stage does both at once
    (its targets are two guided teacher steps), and later stages halve a w-conditioned teacher. Sampling
    ``guidance=w`` then costs one network call per step, not two.
    """

    def __init__(self, path: AffinePath, teacher: Teacher | str = "", student_steps: int = 32,
                 final_steps: int = 1, weighting: str = "velocity", guided: bool = False,
                 guidance_min: float = 0.0, guidance_max: float = 4.0) -> None:
        if student_steps < 1 or final_steps < 1 or final_steps > student_steps:
            raise ConfigError(f"method 'progressive': student_steps={student_steps}, final_steps={final_steps}; "
                              "expected 1 <= final_steps <= student_steps")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"method 'progressive': weighting='{weighting}' is not one of: {', '.join(WEIGHTINGS)}")
        self.path, self._teacher = path, teacher  # built by flowkit from method.teacher (flowkit.teacher)
        self.student_steps, self.final_steps, self.weighting = student_steps, final_steps, weighting
        if guided and not 0 <= guidance_min <= guidance_max:
            raise ConfigError(f"method 'progressive': guidance_min={guidance_min}, guidance_max={guidance_max}; "
                              "expected 0 <= guidance_min <= guidance_max")
        self.guided, self.guidance_range = guided, (guidance_min, guidance_max)

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("guidance",) if self.guided else ()

    @property
    def needs_labels(self) -> bool:
        return self.guided

    def teacher(self, device: torch.device) -> nn.Module:
        return self._teacher.on(device)

    def target(self, x_t: Tensor, t: Tensor, velocity=None) -> tuple[Tensor, Tensor]:
        """(x0~, x1~): the endpoints that turn one student step into two teacher steps. ``velocity(x, t)``
        is the teacher's (guided, conditional) velocity; by default the teacher network itself."""
        half = 0.5 / self.student_steps
        velocity = velocity or self.teacher(x_t.device)
        with torch.no_grad():
            x_mid = ddim_step(self.path, velocity(x_t, t), x_t, t, t + half)
            x_end = ddim_step(self.path, velocity(x_mid, t + half), x_mid, t + half, t + 2 * half)
        return endpoints_through(self.path, x_t, t, x_end, t + 2 * half)

    def teacher_velocity(self, batch: dict[str, Tensor], device: torch.device) -> tuple[Any, dict[str, Tensor]]:
        """(the teacher's velocity function, the student's extra inputs) for this batch: plain, conditional,
        or guided at a per-sample w the student is told."""
        teacher, cond = self.teacher(device), cond_of(batch)
        if not self.guided:
            return (lambda x, s: teacher(x, s, **cond)), cond
        y = cond["cond"]
        low, high = self.guidance_range
        w = low + (high - low) * torch.rand(y.shape[0], device=device)
        return (lambda x, s: guided(teacher, x, s, labels=y, w=w.to(x.dtype), null=teacher.num_classes)), {**cond, "w": w}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        n = self.student_steps
        t = torch.randint(0, n, (x0.shape[0],), device=x0.device).to(x0.dtype) / n
        x_t = self.path.sample(x0, x1, t)
        velocity, inputs = self.teacher_velocity(batch, x_t.device)
        x0_target, x1_target = self.target(x_t, t, velocity)
        v = model(x_t, t, **inputs)
        if self.weighting == "velocity":
            return {"loss": per_sample_mse(v, self.path.from_endpoints(x0_target, x1_target, t, "velocity"))}
        a, s = self.path.alpha(t), self.path.sigma(t)
        weight = torch.clamp((a / s) ** 2, min=1.0)
        _, x1_student = self.path.endpoints(v, x_t, t, "velocity")
        return {"loss": weight * per_sample_mse(x1_student, x1_target)}

    @classmethod
    def next_round(cls, config: dict, run_dir) -> dict | None:
        """The next stage: this student becomes the teacher and its step count halves."""
        spec = config["method"]
        if spec.get("student_steps", 32) <= spec.get("final_steps", 1):
            return None
        return {"method": {"teacher": str(run_dir), "student_steps": spec["student_steps"] // 2},
                "eval": {"solver": f"ddim:{spec['student_steps'] // 2}"},
                **follow_teacher(config, spec["teacher"], run_dir)}
