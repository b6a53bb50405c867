"""The Lightning data module of a training run: the pair stream of ``flowkit.data.pair`` behind a DataLoader.
Apart from it so that building a model, listing the registries or sampling never imports Lightning."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from flowkit.data.contract import Dataset
from flowkit.data.pair import PairStream


class PairDataModule(L.LightningDataModule):
    """``workers`` > 0: that many loader processes draw the batches and, given a ``coupling``, pair them
    (minibatch OT on the CPU, overlapped with the training step); 0: drawn in the training process."""

    def __init__(self, source: Dataset, target: Dataset, batch_size: int, seed: int,
                 labelled: bool = False, workers: int = 0, coupling=None) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.batch_size, self.seed, self.labelled = batch_size, seed, labelled
        self.workers, self.coupling = workers, coupling

    def train_dataloader(self) -> DataLoader:
        # On resume Lightning restores global_step before it asks for the loader.
        trainer = self.trainer
        start, rank, ranks = (trainer.global_step, trainer.global_rank, trainer.world_size) if trainer else (0, 0, 1)
        stream = PairStream(self.source, self.target, self.batch_size, self.seed, start, rank, self.labelled,
                            self.coupling, ranks)
        return DataLoader(stream, batch_size=None, num_workers=self.workers, persistent_workers=self.workers > 0)
