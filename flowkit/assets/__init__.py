"""Data files shipped with flowkit (the digits classifier's weights, read by ``flowkit.metrics.digits_features``):
no code, so part of no layer; it imports nothing."""
