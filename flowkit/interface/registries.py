"""Every registry, imported in one place (for ``flowkit list`` and plugin discovery)."""

from flowkit.couplings import COUPLINGS
from flowkit.data import DATASETS
from flowkit.data.encoders import ENCODERS
from flowkit.metrics.features import FEATURES
from flowkit.samplers.grids import GRIDS
from flowkit.methods import METHODS
from flowkit.models import MODELS
from flowkit.paths import PATHS
from flowkit.registry import Registry
from flowkit.samplers import SAMPLERS
from flowkit.timesteps import TIME_SAMPLERS


def all_registries() -> list[Registry]:
    return [PATHS, COUPLINGS, TIME_SAMPLERS, METHODS, SAMPLERS, GRIDS, MODELS, DATASETS, ENCODERS, FEATURES]
