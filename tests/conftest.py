import os

import pytest
import torch

# The suite runs in two pytest-xdist workers, one file per worker at a time (`addopts` in pyproject.toml): one
# compute thread each, so that two workers on a two-core machine do not fight over four threads; the `flowkit`
# commands the tests start inherit OMP_NUM_THREADS=1 for the same reason (with two threads each, two commands at
# once ran 4-6x slower than alone on two cores: a 58 s test took 336 s, and a 16 s one ran past its 300 s limit).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
