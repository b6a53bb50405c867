"""The training layer: a config in, a run directory with checkpoints, logs, samples and a summary out.

``loop`` is ``flowkit train`` (signals, resume, the final evaluation), ``trainer`` the Lightning Trainer around the
one LightningModule (``module``), a method's own optimisation of a step (``steps``), the model's EMA (``ema``), the
loggers that never lose a row (``loggers``); ``evaluate`` scores a trained model with each sampler. Imports every
layer below (the config layer and ``flowkit.teacher`` included); never the interface.
"""
