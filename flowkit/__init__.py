"""flowkit: flow-matching training and distillation on shared paths, couplings, trainer and solvers."""

__version__ = "0.1.0"
