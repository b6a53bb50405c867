"""A trained student is self-contained: with its teacher run and its init_from run deleted, it still samples,
evaluates, compares and inverts (each student's own way: methods without a velocity field cannot invert and
say so, as they always did)."""

import shutil

import pytest

from flowkit.config.schema import apply_overrides, load_recipe
from tests.helpers import run_cli

QUIET = ["trainer.max_steps=4", "trainer.enable_progress_bar=false", "eval.n=20", "eval.repeats=1", "model.width=16"]
STUDENTS = {
    "cd": ["recipe=cd", "method.teacher={teacher}"],
    "progressive": ["recipe=progressive", "method.teacher={teacher}", "method.student_steps=1"],
    "adversarial": ["recipe=adversarial", "method.teacher={teacher}", "method.critic_width=8"],
    "dmd2": ["recipe=dmd2", "method.teacher={teacher}", "method.fake_updates=1"],
    "scd": ["recipe=scd", "method.teacher={teacher}"],
    "reflow_distill": ["recipe=reflow_distill", "coupling.teacher={teacher}", "coupling.pairs=64",
                       "coupling.solver=euler:2"],
}


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """Each distiller trained a few steps from one tiny teacher, which is then deleted."""
    from flowkit.training.loop import train

    root = tmp_path_factory.mktemp("students")
    teacher = train(apply_overrides(load_recipe("rectified"), [*QUIET, f"run_root={root / 'teacher'}",
                                                               "eval.compare=[]"])).run_dir
    runs = {}
    for name, tokens in STUDENTS.items():
        recipe, *rest = tokens
        cfg = apply_overrides(load_recipe(recipe.split("=")[1]),
                              [*QUIET, f"run_root={root / name}", *[t.format(teacher=teacher) for t in rest]])
        runs[name] = train(cfg).run_dir  # init_from is the teacher too (every one of these recipes but scd's starts from it)
    shutil.rmtree(teacher)
    return runs


@pytest.mark.parametrize("name", STUDENTS)
def test_a_student_samples_evaluates_compares_and_inverts_without_its_teacher(students, name, tmp_path):
    run = students[name]
    for args in (["sample", "n=50", "out=s.npy"], ["eval", "n=50", "repeats=1", "nll_n=10"],
                 ["compare", "n=50", "solvers=euler:1,renoise:1,ddim:1,dopri5"]):
        solver = [] if args[0] == "compare" else ["solver=" + {"cd": "renoise:1", "adversarial": "renoise:1", "dmd2": "renoise:1", "scd": "renoise:1",
                                                               "progressive": "ddim:1"}.get(name, "euler:1")]
        proc = run_cli([*args, f"ckpt={run}", *solver], cwd=tmp_path)
        assert proc.returncode == 0, (args[0], proc.stderr)
    proc = run_cli(["invert", f"ckpt={run}", "in=s.npy", "out=z.npy", "solver=euler:8"], cwd=tmp_path)
    if name in ("cd", "adversarial", "dmd2", "scd"):  # no velocity field to run backwards: the method's own answer
        assert proc.returncode == 2 and "teacher" not in proc.stderr and "no checkpoint" not in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
