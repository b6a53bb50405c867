"""Progressive distillation (Salimans & Ho 2022, Alg. 2) on any affine path.

A student with N steps learns to match two DDIM steps of its teacher (2N steps) with one:

    i ~ U{0..N-1},  t = i/N,  t' = t + 1/(2N),  t'' = t + 1/N,  x_t = alpha(t) x1 + sigma(t) x0
    x_t' = DDIM_teacher(x_t, t -> t'),  x_t'' = DDIM_teacher(x_t', t' -> t'')
    (x0~, x1~) = the endpoints one DDIM step from (x_t, t) must predict to land on x_t''
    L = || v_student(x_t, t) - v~ ||^2,  v~ = alpha'(t) x1~ + sigma'(t) x0~          (weighting=velocity)
    L = max(SNR(t), 1) || x1_student - x1~ ||^2,  SNR = alpha^2 / sigma^2          (weighting=truncated_snr)

Then the student becomes the teacher and N halves (``next_round``), each stage in its own run
directory. A stage's student samples with ``euler:N``, which for this method means N DDIM steps of
the path (identical to Euler on the rectified path).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.errors import ConfigError
from flowkit.methods import per_sample_mse
from flowkit.paths import AffinePath, expand_like
from flowkit.sampling import solve
from flowkit.teacher import Teacher, follow_teacher
from plugins.progressive.ddim import ddim_sample, ddim_step, endpoints_through

WEIGHTINGS = ("velocity", "truncated_snr")


class ProgressiveDistillation:
    """Salimans & Ho 2022: a student halves its teacher's DDIM steps."""

    def __init__(self, path: AffinePath, data_shape: tuple[int, ...] = (), teacher: str = "", student_steps: int = 32,
                 final_steps: int = 1, weighting: str = "velocity") -> None:
        if student_steps < 1 or final_steps < 1 or final_steps > student_steps:
            raise ConfigError(f"method 'progressive': student_steps={student_steps}, final_steps={final_steps}; "
                              "expected 1 <= final_steps <= student_steps")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"method 'progressive': weighting='{weighting}' is not one of: {', '.join(WEIGHTINGS)}")
        self.path, self._teacher = path, Teacher("method 'progressive'", teacher, data_shape)
        self.student_steps, self.final_steps, self.weighting = student_steps, final_steps, weighting

    def teacher(self, device: torch.device) -> nn.Module:
        return self._teacher.on(device)

    def target(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0~, x1~): the endpoints that turn one student step into two teacher steps."""
        half = 0.5 / self.student_steps
        teacher = self.teacher(x_t.device)
        with torch.no_grad():
            x_mid = ddim_step(self.path, teacher(x_t, t), x_t, t, t + half)
            x_end = ddim_step(self.path, teacher(x_mid, t + half), x_mid, t + half, t + 2 * half)
        return endpoints_through(self.path, x_t, t, x_end, t + 2 * half)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        n = self.student_steps
        t = torch.randint(0, n, (x0.shape[0],), device=x0.device).to(x0.dtype) / n
        x_t = self.path.sample(x0, x1, t)
        x0_target, x1_target = self.target(x_t, t)
        v = model(x_t, t)
        if self.weighting == "velocity":
            return {"loss": per_sample_mse(v, self.path.from_endpoints(x0_target, x1_target, t, "velocity"))}
        a, s = self.path.alpha(t), self.path.sigma(t)
        weight = torch.clamp((a / s) ** 2, min=1.0)
        _, x1_student = self.path.endpoints(v, x_t, t, "velocity")
        return {"loss": weight * per_sample_mse(x1_student, x1_target)}

    def sample(self, model: nn.Module, x0: Tensor, method: str = "euler", steps: int | None = None,
               **solver: object) -> tuple[Tensor, int]:
        """``euler:N`` runs N DDIM steps of the path (N NFE); any other solver integrates the velocity."""
        if method == "euler":
            return ddim_sample(model, self.path, x0, steps or self.student_steps), steps or self.student_steps
        return solve(model, x0, method=method, steps=steps, **solver)

    @staticmethod
    def next_round(config: dict, run_dir) -> dict | None:
        """The next stage: this student becomes the teacher and its step count halves."""
        spec = config["method"]
        if spec.get("student_steps", 32) <= spec.get("final_steps", 1):
            return None
        return {"method": {"teacher": str(run_dir), "student_steps": spec["student_steps"] // 2},
                "eval": {"solver": f"euler:{spec['student_steps'] // 2}"},
                **follow_teacher(config, spec["teacher"], run_dir)}
