import os

import pytest
import torch

# The suite runs in two pytest-xdist workers, one file per worker at a time (`addopts` in pyproject.toml): one
# compute thread each, so that two workers on a two-core machine do not fight over four threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
